// SPDX-License-Identifier: GPL-2.0

//! KUnit suites of the vmfair module.
//!
//! They run when the module is loaded on a kernel with `CONFIG_KUNIT=y`; the results are in
//! `/sys/kernel/debug/kunit/<suite>/results`. The policy suite walks the same case tables as the
//! host crate's `cargo test`, so both check one set of cases.

#[kernel::macros::kunit_tests(vmfair_policy)]
mod policy_tests {
    use crate::policy::*;
    use kernel::prelude::*;

    #[test]
    fn entitlement_cases() {
        for c in ENTITLEMENT_CASES {
            let ok = check_entitlement_case(c).is_ok();
            if !ok {
                pr_err!("entitlement case failed: {}\n", c.name);
            }
            assert!(ok);
        }
    }

    #[test]
    fn weight_parse_cases() {
        for (i, c) in WEIGHT_PARSE_CASES.iter().enumerate() {
            let ok = check_weight_parse_case(c);
            if !ok {
                pr_err!("weight parse case {} failed\n", i);
            }
            assert!(ok);
        }
    }

    #[test]
    fn shares_cases() {
        for (i, c) in SHARES_CASES.iter().enumerate() {
            let ok = check_shares_case(c);
            if !ok {
                pr_err!("shares case {} failed\n", i);
            }
            assert!(ok);
        }
    }

    #[test]
    fn misc_checks() {
        assert_eq!(check_misc(), Ok(()));
    }
}
