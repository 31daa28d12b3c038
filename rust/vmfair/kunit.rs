// SPDX-License-Identifier: GPL-2.0

//! KUnit suites of the vmfair module.
//!
//! They run when the module is loaded on a kernel with `CONFIG_KUNIT=y`; the results are in
//! `/sys/kernel/debug/kunit/<suite>/results`. The policy suite walks the same case tables as the
//! host crate's `cargo test`, so both check one set of cases.

#[kernel::macros::kunit_tests(vmfair_policy)]
mod policy_tests {
    use crate::policy::cases::*;
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
    fn allocation_cases() {
        for c in ALLOCATION_CASES {
            let ok = check_allocation_case(c).is_ok();
            if !ok {
                pr_err!("allocation case failed: {}\n", c.name);
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
    fn pid_weight_cases() {
        for (i, c) in PID_WEIGHT_CASES.iter().enumerate() {
            let ok = check_pid_weight_case(c);
            if !ok {
                pr_err!("vm_weight parse case {} failed\n", i);
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

    #[test]
    fn centi_cases() {
        for (i, c) in crate::allocation::cases::CENTI_CASES.iter().enumerate() {
            let ok = crate::allocation::cases::check_centi_case(c);
            if !ok {
                pr_err!("CPU amount parse case {} failed\n", i);
            }
            assert!(ok);
        }
    }

    #[test]
    fn admission_and_load() {
        assert_eq!(crate::allocation::cases::check_admission_and_load(), Ok(()));
    }

    #[test]
    fn shares_from_allocation_cases() {
        use crate::allocation::cases::*;
        for c in SHARES_FROM_ALLOCATION_CASES {
            let ok = check_shares_from_allocation_case(c).is_ok();
            if !ok {
                pr_err!("shares-from-allocation case failed: {}\n", c.name);
            }
            assert!(ok);
        }
    }

    #[test]
    fn correction_cases() {
        use crate::allocation::cases::*;
        for c in CORRECTION_CASES {
            let ok = check_correction_case(c).is_ok();
            if !ok {
                pr_err!("correction case failed: {}\n", c.name);
            }
            assert!(ok);
        }
    }
}

#[kernel::macros::kunit_tests(vmfair_groups)]
mod group_tests {
    use crate::glue::{self, Sleeper, VmGroup};
    use kernel::prelude::*;

    #[test]
    fn attach_detach_kthread() -> Result {
        let t = Sleeper::new()?;
        let g = VmGroup::new(None)?;
        assert!(!g.contains(t.task()));
        glue::attach(t.task(), Some(&g))?;
        assert!(g.contains(t.task()));
        g.set_shares(2048)?;
        // Attaching twice is a no-op.
        glue::attach(t.task(), Some(&g))?;
        assert!(g.contains(t.task()));
        glue::attach(t.task(), None)?;
        assert!(!g.contains(t.task()));
        Ok(())
    }

    #[test]
    fn move_between_groups() -> Result {
        let t = Sleeper::new()?;
        let a = VmGroup::new(None)?;
        let b = VmGroup::new(None)?;
        glue::attach(t.task(), Some(&a))?;
        glue::attach(t.task(), Some(&b))?;
        assert!(!a.contains(t.task()));
        assert!(b.contains(t.task()));
        // The process holds its own reference: dropping ours keeps the group alive.
        drop(b);
        glue::attach(t.task(), None)?;
        assert!(!a.contains(t.task()));
        Ok(())
    }

    #[test]
    fn nested_group_outlives_class() -> Result {
        let t = Sleeper::new()?;
        let class = VmGroup::new(None)?;
        class.set_shares(512)?;
        let vm = VmGroup::new(Some(&class))?;
        glue::attach(t.task(), Some(&vm))?;
        assert!(vm.contains(t.task()));
        // The child pins its parent.
        drop(class);
        assert!(vm.contains(t.task()));
        glue::attach(t.task(), None)?;
        drop(vm);
        Ok(())
    }

    #[test]
    fn survives_setsid() -> Result {
        let t = Sleeper::new()?;
        let g = VmGroup::new(None)?;
        glue::attach(t.task(), Some(&g))?;
        // setsid() replaces the session autogroup only: the VM group stays in force.
        glue::new_session_autogroup(t.task());
        assert!(g.contains(t.task()));
        // Detached, the process is in its new session's autogroup, not in the VM group.
        glue::attach(t.task(), None)?;
        assert!(!g.contains(t.task()));
        Ok(())
    }

    #[test]
    fn stats_of_kthread() -> Result {
        let t = Sleeper::new()?;
        let st = glue::process_stats(t.task())?;
        assert_eq!(st.threads, 1);
        Ok(())
    }

    /// A sysctl file may be longer than a page (`vms` has a line per VM), but not unbounded.
    #[test]
    fn text_buffer_beyond_a_page() {
        use core::fmt::Write;
        let mut b = crate::sysctl::TextBuf::new();
        let line = "1234567 vcpus 4 weight 100 shares 1024 group 1234\n";
        let mut ok = 0;
        while b.write_str(line).is_ok() {
            ok += 1;
        }
        // 1024 VMs' lines fit; the buffer stops at its limit, whole lines only.
        assert!(ok >= 1024);
        assert!(b.as_bytes().len() <= 1 << 20);
        assert_eq!(b.as_bytes().len(), ok * line.len());
    }

    /// A sysctl table keeps the object that serves its files alive until it is unregistered,
    /// whoever else held it.
    #[test]
    fn sysctl_table_holds_its_data() -> Result {
        use crate::sysctl::{SysctlEntry, SysctlFile, SysctlTable, TextBuf};
        use core::sync::atomic::{AtomicBool, Ordering};
        use kernel::{str::CString, sync::Arc};
        static DROPPED: AtomicBool = AtomicBool::new(false);
        struct File;
        impl SysctlFile for File {
            fn show(&self, _key: usize, _out: &mut TextBuf) -> Result {
                Ok(())
            }
            fn store(&self, _key: usize, _input: &[u8]) -> Result {
                Err(EPERM)
            }
        }
        impl Drop for File {
            fn drop(&mut self) {
                DROPPED.store(true, Ordering::SeqCst);
            }
        }
        DROPPED.store(false, Ordering::SeqCst);
        let file = Arc::new(File, GFP_KERNEL)?;
        let t = SysctlTable::register(
            CString::try_from_fmt(fmt!("kernel/vmfair_kunit"))?,
            file.clone(),
            &[SysctlEntry::new(c"probe", 0o444, 0)],
        )?;
        drop(file);
        assert!(!DROPPED.load(Ordering::SeqCst));
        drop(t);
        assert!(DROPPED.load(Ordering::SeqCst));
        Ok(())
    }

    /// A KVM VM notifier is registered while it exists: registering, dropping (which
    /// unregisters and flushes its queue) and registering again with the same listener.
    #[test]
    fn vm_notifier_registers_while_it_exists() -> Result {
        use crate::kvm_notifier::{VmEvent, VmListener, VmNotifier};
        use kernel::sync::Arc;
        struct Ignore;
        impl VmListener for Ignore {
            fn event(_this: &Arc<Self>, _ev: VmEvent) {}
        }
        let listener = Arc::new(Ignore, GFP_KERNEL)?;
        let n = VmNotifier::register(c"vmfair-kunit", listener.clone())?;
        drop(n);
        let again = VmNotifier::register(c"vmfair-kunit", listener)?;
        drop(again);
        Ok(())
    }
}

#[kernel::macros::kunit_tests(vmfair_registry)]
mod registry_tests {
    use crate::glue::Sleeper;
    use crate::policy::ShareMode;
    use crate::registry::{Created, Knobs, Registry};
    use kernel::prelude::*;

    /// The thread's process id, from the kernel: `task_struct` fields are not read from Rust
    /// (see `glue::set_slice`).
    fn tgid(s: &Sleeper) -> i32 {
        s.task().tgid_nr_ns(None)
    }

    #[test]
    fn life_cycle() -> Result {
        let t = Sleeper::new()?;
        let pid = tgid(&t);
        let mut reg = Registry::new(Knobs::DEFAULT);
        let created = reg.vm_created(0x1000, pid, Some(t.task()))?;
        assert!(matches!(created, Created::NewProcess(p, None) if p == pid));
        assert!(reg.in_group(pid, t.task()));
        assert_eq!(reg.len(), 1);

        // A second VM of the same process shares the entry and the group.
        assert!(matches!(
            reg.vm_created(0x2000, pid, Some(t.task()))?,
            Created::Nothing
        ));
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.info(pid)?.vms, 2);

        // vCPU threads are counted once per vCPU id.
        reg.vcpu_thread(0x1000, pid, Some(t.task()), 0, t.task())?;
        reg.vcpu_thread(0x1000, pid, Some(t.task()), 0, t.task())?;
        reg.vcpu_thread(0x2000, pid, Some(t.task()), 1, t.task())?;
        assert_eq!(reg.info(pid)?.vcpus, 2);

        // Destroying the first VM keeps the entry; the last one removes it.
        assert!(reg.vm_destroyed(0x1000).is_none());
        assert!(reg.vm_destroyed(0x3000).is_none());
        let vm = reg.vm_destroyed(0x2000);
        assert!(vm.is_some());
        assert_eq!(reg.len(), 0);
        drop(vm);
        assert!(!reg.in_group(pid, t.task()));
        Ok(())
    }

    #[test]
    fn weights() -> Result {
        let t = Sleeper::new()?;
        let pid = tgid(&t);
        let mut reg = Registry::new(Knobs::DEFAULT);
        reg.vm_created(1, pid, Some(t.task()))?;
        assert_eq!(reg.info(pid)?.shares, 1024);
        reg.set_weight(pid, 300)?;
        assert_eq!(reg.info(pid)?.shares, 3072);
        assert!(reg.info(pid)?.own_weight);
        // Bad input changes nothing.
        assert_eq!(reg.set_weight(pid, 0), Err(EINVAL));
        assert_eq!(reg.set_weight(pid, 10001), Err(EINVAL));
        assert_eq!(reg.set_weight(pid + 100000, 100), Err(ESRCH));
        assert_eq!(reg.info(pid)?.weight, 300);
        drop(reg.drain());
        Ok(())
    }

    #[test]
    fn reservations_and_limits() -> Result {
        use crate::allocation::Centi;
        let (t, u) = (Sleeper::new()?, Sleeper::new()?);
        let (a, b) = (tgid(&t), tgid(&u));
        let mut reg = Registry::new(Knobs::DEFAULT);
        reg.vm_created(1, a, Some(t.task()))?;
        reg.vm_created(2, b, Some(u.task()))?;
        let cpus = crate::glue::online_cpus() * 100;
        // All CPUs may be reserved, not one hundredth more, and a refusal changes nothing.
        reg.set_reservation(a, Centi(cpus - 50))?;
        assert_eq!(reg.set_reservation(b, Centi(51)), Err(ENOSPC));
        assert_eq!(reg.info(b)?.reservation, Centi(0));
        reg.set_reservation(b, Centi(50))?;
        // The headroom may not take what is reserved.
        let mut k = reg.knobs();
        assert_eq!(reg.set_headroom(Centi(1)), Err(ENOSPC));
        assert!(reg.knobs() == k);
        reg.set_reservation(b, Centi(0))?;
        reg.set_headroom(Centi(50))?;
        k.headroom = Centi(50);
        assert!(reg.knobs() == k);
        assert_eq!(reg.set_reservation(b, Centi(1)), Err(ENOSPC));
        // A limit below the reservation, and a reservation above the limit, are refused.
        assert_eq!(reg.set_limit(a, Centi(10)), Err(EINVAL));
        reg.set_reservation(a, Centi(20))?;
        reg.set_limit(a, Centi(25))?;
        assert_eq!(reg.set_reservation(a, Centi(30)), Err(EINVAL));
        assert_eq!(reg.info(a)?.limit, Centi(25));
        assert_eq!(reg.info(a)?.reservation, Centi(20));
        // Unknown VMs.
        assert_eq!(reg.set_limit(a + 100000, Centi(25)), Err(ESRCH));
        // With a reservation in force, the monitor's pass allocates.
        reg.monitor_pass(1_000_000);
        reg.monitor_pass(101_000_000);
        assert!(reg.info(a)?.allocated.is_some());
        assert!(reg.monitor.passes == 2 && reg.monitor.readings == 4);
        reg.set_reservation(a, Centi(0))?;
        // The precision loop (on by default) keeps allocating; sleeping VMs are not
        // contended, so it leaves their shares alone.
        reg.monitor_pass(201_000_000);
        let i = reg.info(a)?;
        assert!(i.allocated.is_some());
        assert_eq!(i.correction, crate::allocation::CORRECTION_ONE);
        assert_eq!(i.shares, 1024);
        k = reg.knobs();
        k.precision = false;
        reg.set_knobs(k)?;
        assert!(reg.info(a)?.allocated.is_none());
        assert_eq!(reg.info(a)?.shares, 1024);
        reg.set_limit(a, Centi(0))?;
        drop(reg.drain());
        Ok(())
    }

    #[test]
    fn knobs() -> Result {
        let t = Sleeper::new()?;
        let pid = tgid(&t);
        let mut reg = Registry::new(Knobs::DEFAULT);
        reg.vm_created(1, pid, Some(t.task()))?;
        reg.vcpu_thread(1, pid, None, 0, t.task())?;
        reg.vcpu_thread(1, pid, None, 1, t.task())?;

        let mut k = reg.knobs();
        k.enabled = false;
        reg.set_knobs(k)?;
        assert!(!reg.in_group(pid, t.task()));
        assert_eq!(reg.info(pid)?.shares, 0);

        k.enabled = true;
        reg.set_knobs(k)?;
        assert!(reg.in_group(pid, t.task()));

        // A class group regroups every VM below it.
        let before = reg.info(pid)?.group_id;
        k.class_weight = 200;
        reg.set_knobs(k)?;
        assert!(reg.in_group(pid, t.task()));
        assert!(reg.info(pid)?.group_id != before);

        // Per-vCPU shares: two vCPUs weigh twice.
        k.share_mode = ShareMode::PerVcpu;
        k.default_weight = 50;
        reg.set_knobs(k)?;
        assert_eq!(reg.info(pid)?.shares, 1024);

        drop(reg.drain());
        Ok(())
    }

    /// A VM whose class group cannot be made keeps its entry (and so gets its directory),
    /// ungrouped, and is grouped on its next event.
    #[test]
    fn class_group_failure_keeps_vm() -> Result {
        let t = Sleeper::new()?;
        let pid = tgid(&t);
        let mut knobs = Knobs::DEFAULT;
        knobs.class_weight = 200;
        let mut reg = Registry::new(knobs);
        reg.fail_groups = 1;
        let created = reg.vm_created(1, pid, Some(t.task()))?;
        assert!(matches!(created, Created::NewProcess(p, None) if p == pid));
        assert_eq!(reg.len(), 1);
        assert!(!reg.in_group(pid, t.task()));
        assert_eq!(reg.info(pid)?.shares, 0);
        // The vCPU's first KVM_RUN retries, and succeeds.
        reg.vcpu_thread(1, pid, None, 0, t.task())?;
        assert!(reg.in_group(pid, t.task()));
        assert_eq!(reg.info(pid)?.shares, 1024);
        drop(reg.drain());
        Ok(())
    }

    /// A VM group that cannot be made leaves the VM ungrouped until a knob write retries.
    #[test]
    fn group_failure_retried() -> Result {
        let t = Sleeper::new()?;
        let pid = tgid(&t);
        let mut reg = Registry::new(Knobs::DEFAULT);
        reg.fail_groups = 1;
        reg.vm_created(1, pid, Some(t.task()))?;
        assert!(!reg.in_group(pid, t.task()));
        reg.set_weight(pid, 200)?;
        assert!(reg.in_group(pid, t.task()));
        assert_eq!(reg.info(pid)?.shares, 2048);
        // A failure on a weight change keeps the old weight and the old group.
        reg.fail_groups = 1;
        let mut k = reg.knobs();
        k.class_weight = 300;
        assert_eq!(reg.set_knobs(k), Err(ENOMEM));
        assert_eq!(reg.knobs().class_weight, 0);
        assert!(reg.in_group(pid, t.task()));
        drop(reg.drain());
        Ok(())
    }
}
