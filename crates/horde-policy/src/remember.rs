//! Remembered approvals: the argv pattern a person's "yes, and don't ask again" turns into, so
//! the same request is not asked twice, and the refusals that keep a remembered answer from
//! allowing more than the person could have meant.
//!
//! Invariant: a remembered pattern always matches the command that was approved (unless that
//! command is refused outright), and it is never broader than its kind says: `Exact` is the
//! parsed program and arguments (so spacing, quoting and `VAR=x` in front do not matter),
//! `Prefix` the program and its subcommand words, `Program` the program. Anything that would
//! let the pattern run arbitrary code (a bare interpreter or shell, inline code, `rm`, code
//! the parser could not see, elevated privileges) is refused with [`TooBroad`].

use std::str::FromStr;

use crate::command::{
    ArgvPattern, CommandLine, PatternError, SimpleCommand, inline_code_flag, is_interpreter,
    is_shell, subcommand_words,
};

/// How much of an approved command a remembered answer covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RememberKind {
    /// This program with exactly these arguments.
    Exact,
    /// This program and subcommand (`cargo test *`, `git push *`, `npm run build *`).
    Prefix,
    /// This program with any arguments (`ls *`).
    Program,
}

impl RememberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RememberKind::Exact => "exact",
            RememberKind::Prefix => "prefix",
            RememberKind::Program => "program",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown remember kind {0:?}: expected exact, prefix or program")]
pub struct UnknownRememberKind(pub String);

impl FromStr for RememberKind {
    type Err = UnknownRememberKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(RememberKind::Exact),
            "prefix" => Ok(RememberKind::Prefix),
            "program" => Ok(RememberKind::Program),
            other => Err(UnknownRememberKind(other.to_owned())),
        }
    }
}

/// Why an approval cannot be remembered this way.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TooBroad {
    #[error("cannot remember a command line that runs code not known before it runs ({})", reasons.join("; "))]
    Opaque { reasons: Vec<String> },
    #[error(
        "cannot remember `{program}`: it runs with elevated privileges (under `{wrapper}`); approve it each time"
    )]
    Elevated { program: String, wrapper: String },
    #[error(
        "cannot remember `{program}` as {kind}: `{program}` is an interpreter or shell, so that would allow running any code; remember it as exact instead"
    )]
    Interpreter { program: String, kind: &'static str },
    #[error(
        "cannot remember `{program} {flag} …` as {kind}: the code is given inline, so that would allow running any code; remember it as exact instead"
    )]
    InlineCode {
        program: String,
        flag: String,
        kind: &'static str,
    },
    #[error(
        "cannot remember `{program}` as {kind}: it destroys data, so that would allow deleting anything; remember it as exact instead"
    )]
    Destructive { program: String, kind: &'static str },
    #[error(
        "cannot remember `{program}` as exact: its arguments are only known when it runs ({args}), so an exact rule would never match it again"
    )]
    DynamicExact { program: String, args: String },
    #[error("cannot remember `{program}` as prefix: its subcommand is only known when it runs")]
    DynamicPrefix { program: String },
    #[error("cannot remember this command: {0}")]
    Pattern(#[from] PatternError),
    #[error("cannot remember this command line: it does not parse ({0})")]
    Unparsed(String),
    #[error("cannot remember this command line: it runs nothing")]
    Empty,
    #[error("only commands can be remembered by {kind}; a {action} request is remembered exactly")]
    NotACommand { kind: &'static str, action: String },
}

/// Wrappers (and programs) that run a command as another user.
const ELEVATED: &[&str] = &["sudo", "doas", "su", "pkexec", "runuser"];

/// Programs whose every use can destroy data: only ever remembered exactly.
const DESTRUCTIVE: &[&str] = &["rm", "rmdir", "shred", "dd", "mkfs", "wipefs", "truncate"];

/// The pattern an approval of `cmd` (a command of `line`) is remembered as, or why it cannot be.
///
/// Dynamic commands (`rm $X`, `cat *.md`, anything under `xargs`): `Exact` is refused, because
/// the approved values are not the values that run next time and an exact pattern never matches
/// a dynamic command anyway; `Prefix` is allowed only when its subcommand words are themselves
/// known (`git push $REMOTE` → `git push *`), because the person saw and approved that
/// subcommand; `Program` is allowed under the same rules as any command — what the program is
/// does not depend on the unknown values.
pub fn remembered_pattern(
    line: &CommandLine,
    cmd: &SimpleCommand,
    kind: RememberKind,
) -> Result<ArgvPattern, TooBroad> {
    if !line.opaque.is_empty() {
        return Err(TooBroad::Opaque {
            reasons: line.opaque.clone(),
        });
    }
    let name = cmd.name();
    if let Some(wrapper) = cmd
        .wrappers
        .iter()
        .map(|w| w.as_str())
        .chain(std::iter::once(name))
        .find(|w| ELEVATED.contains(w))
    {
        return Err(TooBroad::Elevated {
            program: name.to_owned(),
            wrapper: wrapper.to_owned(),
        });
    }
    let broad = kind != RememberKind::Exact;
    if broad {
        if let Some(flag) = inline_code_flag(name, &cmd.args) {
            return Err(TooBroad::InlineCode {
                program: name.to_owned(),
                flag,
                kind: kind.as_str(),
            });
        }
        if is_interpreter(name) || is_shell(name) {
            return Err(TooBroad::Interpreter {
                program: name.to_owned(),
                kind: kind.as_str(),
            });
        }
        if DESTRUCTIVE.contains(&name) || name.starts_with("mkfs.") {
            return Err(TooBroad::Destructive {
                program: name.to_owned(),
                kind: kind.as_str(),
            });
        }
    }
    match kind {
        RememberKind::Exact => {
            if cmd.dynamic {
                return Err(TooBroad::DynamicExact {
                    program: name.to_owned(),
                    args: cmd.args.join(" "),
                });
            }
            Ok(ArgvPattern::exact(cmd)?)
        }
        RememberKind::Prefix => {
            if cmd.dynamic
                && subcommand_words(cmd).any(|w| w.contains(['$', '`', '*', '?', '[', '{']))
            {
                return Err(TooBroad::DynamicPrefix {
                    program: name.to_owned(),
                });
            }
            Ok(ArgvPattern::prefix(cmd)?)
        }
        RememberKind::Program => Ok(ArgvPattern::parse(&format!(
            "{} *",
            quote_program(&cmd.program)
        ))?),
    }
}

/// The rule a remembered grant of a request (`action` on `subject`) stores: for `exec`, one
/// argv pattern per simple command of the line, joined by newlines (each must be remembered
/// on its own); for anything else the exact subject, and only `Exact`.
pub fn remembered_rule(
    action: &str,
    subject: &str,
    kind: RememberKind,
) -> Result<String, TooBroad> {
    if action != "exec" {
        if kind != RememberKind::Exact {
            return Err(TooBroad::NotACommand {
                kind: kind.as_str(),
                action: action.to_owned(),
            });
        }
        return Ok(subject.to_owned());
    }
    let line = crate::command::parse(subject).map_err(|e| TooBroad::Unparsed(e.to_string()))?;
    if line.commands.is_empty() {
        return Err(TooBroad::Empty);
    }
    let mut out = Vec::with_capacity(line.commands.len());
    for c in &line.commands {
        out.push(remembered_pattern(&line, c, kind)?.as_str().to_owned());
    }
    Ok(out.join("\n"))
}

fn quote_program(p: &str) -> String {
    let safe = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./+@%".contains(c));
    if safe {
        p.to_owned()
    } else {
        format!("'{}'", p.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;

    fn remember(line: &str, kind: RememberKind) -> Result<ArgvPattern, TooBroad> {
        let parsed = parse(line).expect("parses");
        let cmd = parsed.commands.last().expect("a command").clone();
        remembered_pattern(&parsed, &cmd, kind)
    }

    #[test]
    fn a_rule_covers_every_command_of_the_line() {
        let r = remembered_rule("exec", "cargo fmt && cargo test -p x", RememberKind::Prefix)
            .expect("remembers");
        assert_eq!(r.lines().count(), 2, "{r}");
        assert!(matches!(
            remembered_rule("exec", "ls && python3 x.py", RememberKind::Program),
            Err(TooBroad::Interpreter { .. })
        ));
        assert!(matches!(
            remembered_rule("write", "src/x.rs", RememberKind::Prefix),
            Err(TooBroad::NotACommand { .. })
        ));
        assert_eq!(
            remembered_rule("net", "github.com", RememberKind::Exact).as_deref(),
            Ok("github.com")
        );
        assert!(matches!(
            remembered_rule("exec", "  ", RememberKind::Exact),
            Err(TooBroad::Unparsed(_) | TooBroad::Empty)
        ));
    }

    #[test]
    fn kinds_parse_from_their_names() {
        assert_eq!("prefix".parse::<RememberKind>(), Ok(RememberKind::Prefix));
        assert!("everything".parse::<RememberKind>().is_err());
    }

    #[test]
    fn prefix_takes_subcommand_words() {
        let p = remember("npm run build -- --watch", RememberKind::Prefix).expect("remembers");
        assert_eq!(p.as_str(), "npm run build *");
        let p = remember("cargo test -p x", RememberKind::Prefix).expect("remembers");
        assert_eq!(p.as_str(), "cargo test *");
    }

    #[test]
    fn sudo_is_never_remembered() {
        let err = remember("sudo apt-get update", RememberKind::Exact).expect_err("refused");
        assert!(matches!(err, TooBroad::Elevated { .. }), "{err}");
    }

    #[test]
    fn inline_code_only_exact() {
        assert!(remember("node -e 'console.log(1)'", RememberKind::Exact).is_ok());
        let err = remember("node -e 'console.log(1)'", RememberKind::Prefix).expect_err("refused");
        assert!(matches!(err, TooBroad::InlineCode { .. }), "{err}");
    }
}
