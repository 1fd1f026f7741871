//! Command lines by structure: shell parsing into simple commands, and argv patterns.
//! (API sketch; the full parser replaces this.)

/// One simple command of a command line, after unwrapping wrappers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The program as written (`rm`, `/usr/bin/rm`); match on `name()`.
    pub program: String,
    /// Arguments after the program, quotes removed.
    pub args: Vec<String>,
    /// `VAR=x` assignments in front of it.
    pub env: Vec<(String, String)>,
    /// Wrappers it ran under, outermost first (`sudo`, `timeout`, `env`, `xargs`, `sh -c` …).
    pub wrappers: Vec<String>,
    /// Files it writes through redirections (`> f`, `>> f`, `2> f`, `&> f`); not `/dev/null`.
    pub writes: Vec<String>,
    /// An argument's value is not known before it runs (`$VAR`, `$(...)`, backquotes, or
    /// extra arguments from `xargs`): an exact pattern can never allow it.
    pub dynamic: bool,
}

impl SimpleCommand {
    /// The program's base name: `/usr/bin/rm` → `rm`.
    pub fn name(&self) -> &str {
        self.program.rsplit('/').next().unwrap_or(&self.program)
    }
}

/// A parsed command line: every simple command it may run, and what cannot be known.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandLine {
    pub commands: Vec<SimpleCommand>,
    /// Reasons the line runs code that cannot be known before it runs (`eval`, `source`, a
    /// shell reading a script from a pipe, a dynamic program name …). Non-empty → never allow.
    pub opaque: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("cannot parse command line: {0}")]
    Syntax(String),
}

/// Parses a shell command line (`sh -c` text).
pub fn parse(line: &str) -> Result<CommandLine, ParseError> {
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    parse_argv(&words)
}

/// Parses an argv that is executed directly (no shell), unwrapping wrappers and `sh -c`.
pub fn parse_argv(argv: &[String]) -> Result<CommandLine, ParseError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ParseError::Syntax("empty command".into()));
    };
    Ok(CommandLine {
        commands: vec![SimpleCommand {
            program: program.clone(),
            args: args.to_vec(),
            env: Vec::new(),
            wrappers: Vec::new(),
            writes: Vec::new(),
            dynamic: false,
        }],
        opaque: Vec::new(),
    })
}

/// An argv pattern of a manifest: `cargo test *`, `rm -r *`, `git push --force *`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgvPattern {
    text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("bad command pattern {pattern:?}: {why}")]
    Bad { pattern: String, why: String },
}

impl ArgvPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.trim().is_empty() || text.trim() == "*" {
            return Err(PatternError::Bad {
                pattern: text.into(),
                why: "matches every command".into(),
            });
        }
        Ok(Self { text: text.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does this simple command match the pattern?
    pub fn matches(&self, cmd: &SimpleCommand) -> bool {
        let mut words = self.text.split_whitespace();
        words.next() == Some(cmd.name())
    }
}
