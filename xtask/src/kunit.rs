//! KUnit results: the guest dumps the kernel log after `modprobe vmfair`
//! (KUnit runs a module's suites while it loads); the kernel's own
//! `tools/testing/kunit/kunit.py parse --json` turns the KTAP in it into
//! test cases, which are counted one by one in the test total.

use crate::util::{self, Ctx};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::process::Command;

/// One KUnit test case.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// `suite.test`
    pub name: String,
    /// PASS, FAIL, SKIP or ERROR
    pub status: String,
}

/// Parse a kernel log holding KTAP with kunit.py; returns every leaf case.
pub fn parse(ctx: &Ctx, log: &str) -> Result<Vec<Case>> {
    let dir = ctx.cache.join("kunit");
    std::fs::create_dir_all(&dir)?;
    let input = dir.join("dmesg.txt");
    let json = dir.join("results.json");
    util::write(&input, log)?;
    let _ = std::fs::remove_file(&json);
    let out = Command::new("python3")
        .arg(ctx.src().join("tools/testing/kunit/kunit.py"))
        .arg("parse")
        .arg(format!("--json={}", json.display()))
        .arg(&input)
        .output()
        .context("cannot run kunit.py parse")?;
    let text = std::fs::read_to_string(&json).with_context(|| {
        format!(
            "kunit.py parse wrote no JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let top: Group = serde_json::from_str(&text).context("kunit.py JSON")?;
    let mut cases = Vec::new();
    walk(&top, "", true, &mut cases);
    if cases.is_empty() {
        bail!("no KUnit test cases found in the guest's kernel log (did the module's suites run?)");
    }
    Ok(cases)
}

/// A group of kunit.py's JSON: a suite, or its synthetic top level; the fields read here
/// (it has more: `misc` counts, build metadata).
#[derive(Debug, Deserialize)]
struct Group {
    name: String,
    sub_groups: Vec<Group>,
    test_cases: Vec<TestCase>,
}

#[derive(Debug, Deserialize)]
struct TestCase {
    name: String,
    status: String,
}

fn walk(g: &Group, prefix: &str, top: bool, out: &mut Vec<Case>) {
    // The top level is kunit.py's synthetic group ("KUnit Test Group").
    let here = if top {
        String::new()
    } else if prefix.is_empty() {
        g.name.clone()
    } else {
        format!("{prefix}.{}", g.name)
    };
    for c in &g.test_cases {
        out.push(Case {
            name: if here.is_empty() {
                c.name.clone()
            } else {
                format!("{here}.{}", c.name)
            },
            status: c.status.clone(),
        });
    }
    for sub in &g.sub_groups {
        walk(sub, &here, false, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_groups_are_flattened() {
        let g: Group = serde_json::from_str(
            r#"{"name":"KUnit Test Group","test_cases":[],"sub_groups":[
                {"name":"vmfair_policy","sub_groups":[],"misc":{"tests":2},"test_cases":[
                    {"name":"weights","status":"PASS"},{"name":"share","status":"FAIL"}]}]}"#,
        )
        .unwrap();
        let mut c = Vec::new();
        walk(&g, "", true, &mut c);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "vmfair_policy.weights");
        assert_eq!(c[1].status, "FAIL");
    }

    /// A case without a status is an error, not a case counted as failed (or passed).
    #[test]
    fn malformed_json_fails() {
        let bad = |t: &str| serde_json::from_str::<Group>(t).unwrap_err().to_string();
        let e = bad(r#"{"name":"g","sub_groups":[],"test_cases":[{"name":"x"}]}"#);
        assert!(e.contains("missing field `status`"), "{e}");
        let e = bad(r#"{"name":"g","sub_groups":[],"test_cases":[{"name":1,"status":"PASS"}]}"#);
        assert!(e.contains("invalid type: integer `1`"), "{e}");
        assert!(bad(r#"{"name":"g","test_cases":[]}"#).contains("missing field `sub_groups`"));
    }
}
