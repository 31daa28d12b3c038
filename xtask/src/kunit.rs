//! KUnit results: the guest dumps the kernel log after `modprobe vmfair`
//! (KUnit runs a module's suites while it loads); the kernel's own
//! `tools/testing/kunit/kunit.py parse --json` turns the KTAP in it into
//! test cases, which are counted one by one in the test total.

use crate::util::{self, Ctx};
use anyhow::{bail, Context, Result};
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
    let v: serde_json::Value = serde_json::from_str(&text).context("kunit.py JSON")?;
    let mut cases = Vec::new();
    walk(&v, "", true, &mut cases);
    if cases.is_empty() {
        bail!("no KUnit test cases found in the guest's kernel log (did the module's suites run?)");
    }
    Ok(cases)
}

fn walk(v: &serde_json::Value, prefix: &str, top: bool, out: &mut Vec<Case>) {
    let name = v["name"].as_str().unwrap_or("");
    // The top level is kunit.py's synthetic group ("KUnit Test Group").
    let here = if top {
        String::new()
    } else if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    };
    if let Some(cases) = v["test_cases"].as_array() {
        for c in cases {
            let n = c["name"].as_str().unwrap_or("?");
            out.push(Case {
                name: if here.is_empty() {
                    n.to_string()
                } else {
                    format!("{here}.{n}")
                },
                status: c["status"].as_str().unwrap_or("FAIL").to_string(),
            });
        }
    }
    if let Some(groups) = v["sub_groups"].as_array() {
        for g in groups {
            walk(g, &here, false, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_groups_are_flattened() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"name":"KUnit Test Group","test_cases":[],"sub_groups":[
                {"name":"vmfair_policy","sub_groups":[],"test_cases":[
                    {"name":"weights","status":"PASS"},{"name":"share","status":"FAIL"}]}]}"#,
        )
        .unwrap();
        let mut c = Vec::new();
        walk(&v, "", true, &mut c);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "vmfair_policy.weights");
        assert_eq!(c[1].status, "FAIL");
    }
}
