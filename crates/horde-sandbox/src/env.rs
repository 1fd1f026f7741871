//! The environment a confined command gets: this process's, without what looks like a secret.

use std::ffi::OsString;

/// Exact names that are always taken out (credentials and agents' sockets).
const SECRET_NAMES: [&str; 12] = [
    "HORDE_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "DBUS_SESSION_BUS_ADDRESS",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "KUBECONFIG",
    "DOCKER_HOST",
    "NETRC",
    "GIT_ASKPASS",
];

/// Suffixes (after `_`) and infixes of names that hold secrets: `GITHUB_TOKEN`,
/// `OPENAI_API_KEY`, `DB_PASSWORD`, `STRIPE_SECRET`, `NPM_AUTH`.
const SECRET_SUFFIXES: [&str; 8] = [
    "_TOKEN",
    "_KEY",
    "_SECRET",
    "_PASSWORD",
    "_PASSWD",
    "_PASS",
    "_CREDENTIALS",
    "_AUTH",
];
const SECRET_INFIXES: [&str; 5] = ["SECRET", "PASSWORD", "API_KEY", "PRIVATE_KEY", "CREDENTIAL"];

/// Whether a variable's name says it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_NAMES.contains(&upper.as_str())
        || upper.starts_with("HORDE_")
        || SECRET_SUFFIXES.iter().any(|s| upper.ends_with(s))
        || SECRET_INFIXES.iter().any(|s| upper.contains(s))
}

/// Splits `env` into what the command gets and the names taken out (sorted). Names in
/// `pass` are kept whatever they look like; proxy variables are always replaced by the
/// sandbox's own, so they are taken out here.
pub fn filter(
    env: Vec<(OsString, OsString)>,
    pass: &[String],
) -> (Vec<(OsString, OsString)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut stripped = Vec::new();
    for (k, v) in env {
        let Some(name) = k.to_str() else {
            stripped.push(k.to_string_lossy().into_owned());
            continue;
        };
        let proxy = name.to_ascii_lowercase().ends_with("_proxy");
        if proxy || (looks_secret(name) && !pass.iter().any(|p| p == name)) {
            stripped.push(name.to_owned());
        } else {
            kept.push((k, v));
        }
    }
    stripped.sort();
    (kept, stripped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_taken_out_unless_passed() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect::<Vec<_>>()
        };
        let (kept, stripped) = filter(
            env(&[
                ("PATH", "/usr/bin"),
                ("HOME", "/home/a"),
                ("HORDE_API_KEY", "hk_1"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
                ("GITHUB_TOKEN", "ghp"),
                ("OPENAI_API_KEY", "sk"),
                ("DB_PASSWORD", "pw"),
                ("CARGO_REGISTRY_TOKEN", "t"),
                ("https_proxy", "http://corp:3128"),
                ("NPM_TOKEN", "n"),
                ("TERM", "xterm"),
            ]),
            &["NPM_TOKEN".to_string()],
        );
        let names: Vec<_> = kept
            .iter()
            .map(|(k, _)| k.to_str().expect("test input"))
            .collect();
        assert_eq!(names, ["PATH", "HOME", "NPM_TOKEN", "TERM"]);
        assert!(stripped.contains(&"HORDE_API_KEY".to_string()));
        assert!(stripped.contains(&"https_proxy".to_string()));
        assert_eq!(stripped.len(), 7);
    }
}
