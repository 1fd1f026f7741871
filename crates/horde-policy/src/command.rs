//! Command lines by structure: a hand-written parser for the POSIX `sh` subset agents write
//! (plus the few bash forms they use every day), which turns a line into every simple command it
//! may run, and argv patterns that match those commands with their flags parsed.
//!
//! Invariants:
//! - Every simple command the line may run is in [`CommandLine::commands`]: the ones in `&&`,
//!   `||`, `;`, `|` chains, subshells, groups, `if`/`for`/`while`/`case` bodies, `$(...)`,
//!   backquotes, process substitutions, unquoted here-document bodies, `sh -c` strings, and the
//!   commands wrappers (`sudo`, `env`, `timeout`, `xargs`, `find -exec` …) run.
//! - What cannot be known before the line runs is never hidden: a code string the parser cannot
//!   see (`eval`, `source`, `curl … | sh`, a dynamic program name, a write to a dynamic path) is
//!   an [`CommandLine::opaque`] reason; an argument whose value is not known makes its command
//!   [`SimpleCommand::dynamic`]; anything outside the subset is a [`ParseError`].
//! - Everything that grows has a named limit ([`MAX_LINE_BYTES`], [`MAX_COMMANDS`],
//!   [`MAX_DEPTH`], [`MAX_WRAPPERS`]); going over one is a [`ParseError`] naming it. The parser
//!   never panics on any input.

use std::fmt;

/// Longest command line (or `argv`, counting its bytes) the parser accepts.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most simple commands one line may hold (after unwrapping and `sh -c` strings).
pub const MAX_COMMANDS: usize = 256;
/// Deepest nesting of subshells, groups, compound commands, substitutions and `sh -c` strings.
pub const MAX_DEPTH: usize = 8;
/// Most wrappers (`sudo env timeout nice …`) in front of one command.
pub const MAX_WRAPPERS: usize = 16;

/// One simple command of a command line, after unwrapping wrappers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The program as written (`rm`, `/usr/bin/rm`); match on `name()`.
    pub program: String,
    /// Arguments after the program, quotes removed. An argument with a substitution keeps its
    /// source text (`$HOME/x`, `$(date)`), since its value is not known.
    pub args: Vec<String>,
    /// `VAR=x` assignments in front of it (also those given to `env` and `sudo`).
    pub env: Vec<(String, String)>,
    /// Wrappers it ran under, outermost first (`sudo`, `timeout`, `env`, `xargs`, `bash -c`,
    /// `find -exec` …).
    pub wrappers: Vec<String>,
    /// Files it writes through redirections (`> f`, `>> f`, `2> f`, `&> f`, `<> f`); not
    /// `/dev/null`, `/dev/stdout`, `/dev/stderr`, nor fd duplications (`2>&1`).
    pub writes: Vec<String>,
    /// An argument's value is not known before it runs (`$VAR`, `$(...)`, backquotes, an
    /// unquoted glob, or extra arguments from `xargs`/`find -exec {}`): an exact pattern can
    /// never allow it.
    pub dynamic: bool,
}

impl SimpleCommand {
    /// The program's base name: `/usr/bin/rm` → `rm`.
    pub fn name(&self) -> &str {
        base_name(&self.program)
    }
}

fn base_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
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
    #[error("command line is {len} bytes, over the limit of {max} (MAX_LINE_BYTES)")]
    TooLong { len: usize, max: usize },
    #[error("command line holds more than {max} simple commands (MAX_COMMANDS)")]
    TooManyCommands { max: usize },
    #[error("command line nests deeper than {max} levels at {near:?} (MAX_DEPTH)")]
    TooDeep { max: usize, near: String },
    #[error("more than {max} wrappers in front of {near:?} (MAX_WRAPPERS)")]
    TooManyWrappers { max: usize, near: String },
}

/// Parses a shell command line (`sh -c` text).
pub fn parse(line: &str) -> Result<CommandLine, ParseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ParseError::TooLong {
            len: line.len(),
            max: MAX_LINE_BYTES,
        });
    }
    if line.contains('\0') {
        // `sh -c` gets a C string: the shell would see only the part before the NUL.
        return Err(ParseError::Syntax("the line holds a NUL byte".into()));
    }
    let mut out = CommandLine::default();
    Parser::new(line, 0, &mut out).parse_all()?;
    if out.commands.is_empty() && out.opaque.is_empty() {
        // Nothing to judge: never let an empty verdict read as "every command allowed".
        return Err(ParseError::Syntax(format!(
            "the line runs no command: {line:?}"
        )));
    }
    Ok(out)
}

/// Parses an argv that is executed directly (no shell), unwrapping wrappers and `sh -c`.
pub fn parse_argv(argv: &[String]) -> Result<CommandLine, ParseError> {
    let len: usize = argv.iter().map(|a| a.len() + 1).sum();
    if len > MAX_LINE_BYTES {
        return Err(ParseError::TooLong {
            len,
            max: MAX_LINE_BYTES,
        });
    }
    if argv.is_empty() {
        return Err(ParseError::Syntax("empty command".into()));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(ParseError::Syntax("an argument holds a NUL byte".into()));
    }
    let mut out = CommandLine::default();
    // No shell runs this argv: `$X` and `*` in it are literal characters.
    let args = argv
        .iter()
        .map(|a| Arg {
            text: a.clone(),
            dynamic: false,
        })
        .collect();
    let mut parser = Parser::new("", 0, &mut out);
    parser.resolve(Invocation {
        argv: args,
        env: Vec::new(),
        writes: Vec::new(),
        wrappers: Vec::new(),
        dynamic: false,
        stdin: Stdin::Inherited,
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser
// ---------------------------------------------------------------------------------------------

/// A word after quote removal. `dynamic`: its value depends on expansions; `plain`: written
/// without any quoting or expansion (only plain words can be reserved words or assignments).
#[derive(Debug, Clone, Default)]
struct Word {
    text: String,
    dynamic: bool,
    /// Holds a command substitution (its commands were added already).
    substituted: bool,
    plain: bool,
    /// Byte length of the leading `NAME=` if the word is an assignment (`NAME` unquoted).
    assign: Option<usize>,
    quoted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedirKind {
    Out,
    Append,
    Clobber,
    In,
    ReadWrite,
    HereDoc { strip_tabs: bool },
    HereString,
    DupOut,
    DupIn,
    OutErr,
    AppendErr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    AndIf,
    OrIf,
    Semi,
    DSemi,
    Pipe,
    PipeAmp,
    Amp,
    LParen,
    RParen,
    Redir(RedirKind),
}

#[derive(Debug, Clone)]
enum Tok {
    Word(Word),
    Op(Op),
    Newline,
    Eof,
}

/// Where a simple command's standard input comes from; a shell or interpreter reading its
/// program from a pipe or a here-document runs code the parser cannot see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdin {
    Inherited,
    Pipe,
    Document,
    File,
}

/// What ends a compound list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    RParen,
    Keyword(&'static str),
    DSemi,
}

struct PendingHereDoc {
    delim: String,
    strip_tabs: bool,
    expand: bool,
}

/// One argument with whether its value is known.
#[derive(Debug, Clone)]
struct Arg {
    text: String,
    dynamic: bool,
}

/// A command about to be unwrapped.
struct Invocation {
    argv: Vec<Arg>,
    env: Vec<(String, String)>,
    writes: Vec<String>,
    wrappers: Vec<String>,
    dynamic: bool,
    stdin: Stdin,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    peeked: Option<Tok>,
    heredocs: Vec<PendingHereDoc>,
    stdin: Stdin,
    out: &'a mut CommandLine,
}

const RESERVED_ENDS: &[&str] = &["then", "else", "elif", "fi", "do", "done", "esac", "}"];

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn snippet(chars: &[char], pos: usize) -> String {
    let end = (pos + 24).min(chars.len());
    let start = pos.min(end);
    chars[start..end].iter().collect()
}

impl<'a> Parser<'a> {
    fn new(text: &str, depth: usize, out: &'a mut CommandLine) -> Self {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            depth,
            peeked: None,
            heredocs: Vec::new(),
            stdin: Stdin::Inherited,
            out,
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, ParseError> {
        let near = snippet(&self.chars, self.pos);
        if near.is_empty() {
            return Err(ParseError::Syntax(format!("{what} at the end of the line")));
        }
        Err(ParseError::Syntax(format!(
            "{what} at byte {} near {near:?}",
            self.byte_pos()
        )))
    }

    fn byte_pos(&self) -> usize {
        self.chars[..self.pos.min(self.chars.len())]
            .iter()
            .map(|c| c.len_utf8())
            .sum()
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::TooDeep {
                max: MAX_DEPTH,
                near: snippet(&self.chars, self.pos),
            });
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn cur(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn parse_all(&mut self) -> Result<(), ParseError> {
        self.compound_list(&[End::Eof])?;
        Ok(())
    }

    // ---- tokens ------------------------------------------------------------------------------

    fn peek(&mut self) -> Result<&Tok, ParseError> {
        if self.peeked.is_none() {
            let tok = self.lex()?;
            self.peeked = Some(tok);
        }
        Ok(self.peeked.as_ref().expect("peeked was just filled"))
    }

    fn next(&mut self) -> Result<Tok, ParseError> {
        match self.peeked.take() {
            Some(tok) => Ok(tok),
            None => self.lex(),
        }
    }

    /// Skips blanks, comments and line continuations.
    fn skip_blanks(&mut self) {
        loop {
            match self.cur() {
                Some(' ' | '\t' | '\r') => self.pos += 1,
                Some('\\') if self.at(1) == Some('\n') => self.pos += 2,
                Some('#') => {
                    while let Some(c) = self.cur() {
                        if c == '\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn lex(&mut self) -> Result<Tok, ParseError> {
        self.skip_blanks();
        let Some(c) = self.cur() else {
            return Ok(Tok::Eof);
        };
        if c == '\n' {
            self.pos += 1;
            self.read_heredoc_bodies()?;
            return Ok(Tok::Newline);
        }
        // An fd number in front of a redirection: `2>`, `2>>`, `0<`.
        if c.is_ascii_digit() {
            let mut end = self.pos;
            while self.chars.get(end).is_some_and(char::is_ascii_digit) {
                end += 1;
            }
            if matches!(self.chars.get(end), Some('<' | '>'))
                && !matches!(self.chars.get(end + 1), Some('('))
            {
                self.pos = end;
                return self.lex_operator();
            }
        }
        if matches!(c, '<' | '>') && self.at(1) == Some('(') {
            // Process substitution `<(cmd)` / `>(cmd)`: a word whose value is a pipe's path.
            return Ok(Tok::Word(self.lex_word()?));
        }
        if matches!(c, '|' | '&' | ';' | '<' | '>' | '(' | ')') {
            return self.lex_operator();
        }
        Ok(Tok::Word(self.lex_word()?))
    }

    fn lex_operator(&mut self) -> Result<Tok, ParseError> {
        let three: String = self.chars[self.pos..(self.pos + 3).min(self.chars.len())]
            .iter()
            .collect();
        let candidates: &[(&str, Op)] = &[
            ("&>>", Op::Redir(RedirKind::AppendErr)),
            ("<<-", Op::Redir(RedirKind::HereDoc { strip_tabs: true })),
            ("<<<", Op::Redir(RedirKind::HereString)),
            ("&&", Op::AndIf),
            ("||", Op::OrIf),
            (";;", Op::DSemi),
            ("|&", Op::PipeAmp),
            ("&>", Op::Redir(RedirKind::OutErr)),
            (">>", Op::Redir(RedirKind::Append)),
            (">|", Op::Redir(RedirKind::Clobber)),
            (">&", Op::Redir(RedirKind::DupOut)),
            ("<&", Op::Redir(RedirKind::DupIn)),
            ("<>", Op::Redir(RedirKind::ReadWrite)),
            ("<<", Op::Redir(RedirKind::HereDoc { strip_tabs: false })),
            ("|", Op::Pipe),
            ("&", Op::Amp),
            (";", Op::Semi),
            ("(", Op::LParen),
            (")", Op::RParen),
            (">", Op::Redir(RedirKind::Out)),
            ("<", Op::Redir(RedirKind::In)),
        ];
        for (text, op) in candidates {
            if three.starts_with(text) {
                self.pos += text.chars().count();
                return Ok(Tok::Op(*op));
            }
        }
        self.err("unexpected character")
    }

    fn lex_word(&mut self) -> Result<Word, ParseError> {
        let mut w = Word {
            plain: true,
            ..Word::default()
        };
        let mut name_so_far = true;
        let mut unquoted_brace = false;
        let mut unquoted_bracket = false;
        let mut unquoted_comma = false;
        let start = self.pos;
        while let Some(c) = self.cur() {
            match c {
                ' ' | '\t' | '\r' | '\n' | '|' | '&' | ';' | ')' => break,
                '<' | '>' if self.pos == start && self.at(1) == Some('(') => {
                    self.pos += 2;
                    self.substitution_list()?;
                    w.text.push_str("<(...)");
                    w.dynamic = true;
                    w.substituted = true;
                    w.plain = false;
                    name_so_far = false;
                }
                '<' | '>' | '(' => break,
                '\\' => {
                    w.plain = false;
                    w.quoted = true;
                    match self.at(1) {
                        Some('\n') => self.pos += 2,
                        Some(n) => {
                            w.text.push(n);
                            self.pos += 2;
                        }
                        None => {
                            w.text.push('\\');
                            self.pos += 1;
                        }
                    }
                    name_so_far = false;
                }
                '\'' => {
                    w.plain = false;
                    w.quoted = true;
                    name_so_far = false;
                    self.pos += 1;
                    loop {
                        match self.cur() {
                            None => return self.err("unterminated single quote"),
                            Some('\'') => {
                                self.pos += 1;
                                break;
                            }
                            Some(ch) => {
                                w.text.push(ch);
                                self.pos += 1;
                            }
                        }
                    }
                }
                '"' => {
                    w.plain = false;
                    w.quoted = true;
                    name_so_far = false;
                    self.pos += 1;
                    self.double_quoted(&mut w, Some('"'))?;
                }
                '$' | '`' => {
                    w.plain = false;
                    name_so_far = false;
                    self.expansion(&mut w)?;
                }
                _ => {
                    if c == '=' && name_so_far && w.assign.is_none() && is_name(&w.text) {
                        w.assign = Some(w.text.len() + 1);
                    }
                    if w.assign.is_none() && !(c == '_' || c.is_ascii_alphanumeric()) {
                        name_so_far = false;
                    }
                    // An unquoted glob expands to file names only known when it runs.
                    if matches!(c, '*' | '?') || (c == ']' && unquoted_bracket) {
                        w.dynamic = true;
                    }
                    unquoted_bracket |= c == '[';
                    unquoted_brace |= c == '{';
                    unquoted_comma |= c == ',' && unquoted_brace;
                    if c == '}' && unquoted_comma {
                        // Brace expansion `{a,b}` (bash) turns one word into several.
                        w.dynamic = true;
                    }
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
        if self.pos == start {
            return self.err("expected a word");
        }
        Ok(w)
    }

    /// Reads double-quoted text (or an unquoted here-document body when `end` is `None`).
    fn double_quoted(&mut self, w: &mut Word, end: Option<char>) -> Result<(), ParseError> {
        loop {
            match self.cur() {
                None if end.is_none() => return Ok(()),
                None => return self.err("unterminated double quote"),
                Some(c) if Some(c) == end => {
                    self.pos += 1;
                    return Ok(());
                }
                Some('\\') => {
                    match self.at(1) {
                        Some('\n') => {}
                        Some(n @ ('$' | '`' | '"' | '\\')) => w.text.push(n),
                        Some(n) => {
                            w.text.push('\\');
                            w.text.push(n);
                        }
                        None => w.text.push('\\'),
                    }
                    self.pos = (self.pos + 2).min(self.chars.len());
                }
                Some('$' | '`') => self.expansion(w)?,
                Some(c) => {
                    w.text.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `$NAME`, `${...}`, `$(...)`, `$((...))`, `$'...'`, backquotes. Substituted commands are
    /// parsed and added to the line; the word keeps the expansion's source text.
    fn expansion(&mut self, w: &mut Word) -> Result<(), ParseError> {
        let start = self.pos;
        if self.cur() == Some('`') {
            self.pos += 1;
            let mut inner = String::new();
            loop {
                match self.cur() {
                    None => return self.err("unterminated backquote"),
                    Some('`') => {
                        self.pos += 1;
                        break;
                    }
                    Some('\\') if matches!(self.at(1), Some('`' | '\\' | '$')) => {
                        inner.extend(self.at(1));
                        self.pos += 2;
                    }
                    Some(c) => {
                        inner.push(c);
                        self.pos += 1;
                    }
                }
            }
            self.enter()?;
            let depth = self.depth;
            Parser::new(&inner, depth, self.out).parse_all()?;
            self.leave();
            w.text.extend(&self.chars[start..self.pos]);
            w.dynamic = true;
            w.substituted = true;
            return Ok(());
        }
        // At '$'.
        match self.at(1) {
            Some('(') if self.at(2) == Some('(') => {
                // Arithmetic: its value is unknown; a substitution inside is not supported.
                self.pos += 3;
                let mut level = 2usize;
                while level > 0 {
                    match self.cur() {
                        None => return self.err("unterminated $(( arithmetic"),
                        Some('(') => level += 1,
                        Some(')') => level -= 1,
                        Some('`') => return self.err("command substitution inside $(( ))"),
                        Some('$') if self.at(1) == Some('(') && self.at(2) != Some('(') => {
                            return self.err("command substitution inside $(( ))");
                        }
                        _ => {}
                    }
                    self.pos += 1;
                }
                w.dynamic = true;
            }
            Some('(') => {
                self.pos += 2;
                self.substitution_list()?;
                w.dynamic = true;
                w.substituted = true;
            }
            Some('{') => {
                self.pos += 2;
                let mut level = 1usize;
                while level > 0 {
                    match self.cur() {
                        None => return self.err("unterminated ${"),
                        Some('{') => level += 1,
                        Some('}') => level -= 1,
                        Some('`') => return self.err("command substitution inside ${ }"),
                        Some('$') if self.at(1) == Some('(') => {
                            return self.err("command substitution inside ${ }");
                        }
                        Some('\\') => self.pos += 1,
                        _ => {}
                    }
                    self.pos += 1;
                }
                w.dynamic = true;
            }
            Some('\'') => {
                // ANSI-C quoting (bash): backslash escapes, value known.
                self.pos += 2;
                loop {
                    match self.cur() {
                        None => return self.err("unterminated $'"),
                        Some('\'') => {
                            self.pos += 1;
                            break;
                        }
                        Some('\\') => {
                            self.pos += 1;
                            match self.ansi_escape() {
                                Some(decoded) => w.text.push(decoded),
                                // An escape this parser does not decode: the value is unknown.
                                None => w.dynamic = true,
                            }
                        }
                        Some(c) => {
                            w.text.push(c);
                            self.pos += 1;
                        }
                    }
                }
                w.quoted = true;
                return Ok(());
            }
            Some('"') => {
                // Locale quoting `$"..."` reads like "...".
                self.pos += 2;
                w.quoted = true;
                return self.double_quoted(w, Some('"'));
            }
            Some(c) if c == '_' || c.is_ascii_alphabetic() => {
                self.pos += 1;
                while self
                    .cur()
                    .is_some_and(|c| c == '_' || c.is_ascii_alphanumeric())
                {
                    self.pos += 1;
                }
                w.dynamic = true;
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.pos += 2;
                w.dynamic = true;
            }
            _ => {
                // A lone `$` is literal.
                w.text.push('$');
                self.pos += 1;
                return Ok(());
            }
        }
        w.text.extend(&self.chars[start..self.pos]);
        Ok(())
    }

    /// Decodes one `$'…'` escape after its backslash (bash's set), or `None` for one it cannot
    /// decode (`\cX`, a code point that is not a char).
    fn ansi_escape(&mut self) -> Option<char> {
        let c = self.cur()?;
        self.pos += 1;
        let simple = match c {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'e' | 'E' => Some('\u{1b}'),
            'f' => Some('\u{c}'),
            'v' => Some('\u{b}'),
            '\\' | '\'' | '"' | '?' => Some(c),
            _ => None,
        };
        if simple.is_some() {
            return simple;
        }
        let (radix, max_digits, first) = match c {
            'x' => (16, 2, None),
            'u' => (16, 4, None),
            'U' => (16, 8, None),
            '0'..='7' => (8, 2, c.to_digit(8)),
            _ => return None,
        };
        let mut value = first.unwrap_or(0);
        let mut digits = 0;
        while digits < max_digits
            && let Some(d) = self.cur().and_then(|d| d.to_digit(radix))
        {
            value = value.checked_mul(radix)?.checked_add(d)?;
            self.pos += 1;
            digits += 1;
        }
        if first.is_none() && digits == 0 {
            return None;
        }
        char::from_u32(value)
    }

    /// The commands of `$(...)` / `<(...)`: parsed in place up to the closing `)`.
    fn substitution_list(&mut self) -> Result<(), ParseError> {
        debug_assert!(
            self.peeked.is_none(),
            "a word is lexed only with no token peeked"
        );
        self.enter()?;
        let saved = std::mem::replace(&mut self.stdin, Stdin::Inherited);
        self.compound_list(&[End::RParen])?;
        self.stdin = saved;
        self.leave();
        Ok(())
    }

    fn read_heredoc_bodies(&mut self) -> Result<(), ParseError> {
        let pending = std::mem::take(&mut self.heredocs);
        for doc in pending {
            let mut body = String::new();
            while self.cur().is_some() {
                let mut line = String::new();
                while let Some(c) = self.cur() {
                    self.pos += 1;
                    if c == '\n' {
                        break;
                    }
                    line.push(c);
                }
                let candidate = if doc.strip_tabs {
                    line.trim_start_matches('\t')
                } else {
                    &line
                };
                if candidate == doc.delim {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
            }
            if doc.expand {
                // An unquoted delimiter: `$(...)` and backquotes in the body run.
                self.enter()?;
                let depth = self.depth;
                let mut inner = Parser::new(&body, depth, self.out);
                let mut sink = Word::default();
                inner.double_quoted(&mut sink, None)?;
                self.leave();
            }
        }
        Ok(())
    }

    // ---- grammar -----------------------------------------------------------------------------

    fn is_end(tok: &Tok, ends: &[End]) -> Option<End> {
        ends.iter().copied().find(|end| match (end, tok) {
            (End::Eof, Tok::Eof) => true,
            (End::RParen, Tok::Op(Op::RParen)) => true,
            (End::DSemi, Tok::Op(Op::DSemi)) => true,
            (End::Keyword(k), Tok::Word(w)) => w.plain && w.text == *k,
            _ => false,
        })
    }

    /// A list of and-or lists up to one of `ends` (consumed and returned).
    fn compound_list(&mut self, ends: &[End]) -> Result<End, ParseError> {
        loop {
            while matches!(self.peek()?, Tok::Newline) {
                self.next()?;
            }
            if let Some(end) = Self::is_end(self.peek()?, ends) {
                self.next()?;
                return Ok(end);
            }
            match self.peek()? {
                Tok::Eof => return self.err("unexpected end of line"),
                Tok::Op(Op::RParen) => return self.err("unexpected `)`"),
                Tok::Word(w) if w.plain && RESERVED_ENDS.contains(&w.text.as_str()) => {
                    let text = w.text.clone();
                    return self.err(&format!("unexpected `{text}`"));
                }
                _ => {}
            }
            self.and_or()?;
            match self.peek()? {
                Tok::Op(Op::Semi | Op::Amp) | Tok::Newline => {
                    self.next()?;
                }
                tok => {
                    if Self::is_end(tok, ends).is_none() {
                        return self.err("expected `;`, `&` or a newline");
                    }
                }
            }
        }
    }

    fn and_or(&mut self) -> Result<(), ParseError> {
        self.pipeline()?;
        while matches!(self.peek()?, Tok::Op(Op::AndIf | Op::OrIf)) {
            self.next()?;
            while matches!(self.peek()?, Tok::Newline) {
                self.next()?;
            }
            self.pipeline()?;
        }
        Ok(())
    }

    fn pipeline(&mut self) -> Result<(), ParseError> {
        if let Tok::Word(w) = self.peek()?
            && w.plain
            && w.text == "!"
        {
            self.next()?;
        }
        let outer = self.stdin;
        self.command()?;
        while matches!(self.peek()?, Tok::Op(Op::Pipe | Op::PipeAmp)) {
            self.next()?;
            while matches!(self.peek()?, Tok::Newline) {
                self.next()?;
            }
            self.stdin = Stdin::Pipe;
            self.command()?;
        }
        self.stdin = outer;
        Ok(())
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        match self.next()? {
            Tok::Word(w) if w.plain && w.text == kw => Ok(()),
            _ => self.err(&format!("expected `{kw}`")),
        }
    }

    fn command(&mut self) -> Result<(), ParseError> {
        let start = self.out.commands.len();
        let keyword = match self.peek()? {
            Tok::Op(Op::LParen) => Some("("),
            Tok::Word(w) if w.plain => match w.text.as_str() {
                "{" => Some("{"),
                "if" => Some("if"),
                "while" => Some("while"),
                "until" => Some("until"),
                "for" | "select" => Some("for"),
                "case" => Some("case"),
                "[[" => Some("[["),
                "function" => Some("function"),
                _ => None,
            },
            _ => None,
        };
        let Some(keyword) = keyword else {
            return self.simple_command();
        };
        if keyword == "[[" {
            return self.double_bracket();
        }
        if keyword == "function" {
            // `function name [()] compound-command` (bash, ksh).
            self.next()?;
            match self.next()? {
                Tok::Word(w) if is_function_name(&w.text) => {}
                _ => return self.err("expected a function name"),
            }
            if matches!(self.peek()?, Tok::Op(Op::LParen)) {
                return self.function_definition();
            }
            while matches!(self.peek()?, Tok::Newline) {
                self.next()?;
            }
            self.enter()?;
            self.command()?;
            self.leave();
            return Ok(());
        }
        self.next()?;
        if keyword == "(" && self.cur() == Some('(') && self.peeked.is_none() {
            return self.err("arithmetic command (( )) is not supported");
        }
        self.enter()?;
        match keyword {
            "(" => {
                self.compound_list(&[End::RParen])?;
            }
            "{" => {
                self.compound_list(&[End::Keyword("}")])?;
            }
            "if" => {
                self.compound_list(&[End::Keyword("then")])?;
                loop {
                    let end = self.compound_list(&[
                        End::Keyword("elif"),
                        End::Keyword("else"),
                        End::Keyword("fi"),
                    ])?;
                    match end {
                        End::Keyword("elif") => {
                            self.compound_list(&[End::Keyword("then")])?;
                        }
                        End::Keyword("else") => {
                            self.compound_list(&[End::Keyword("fi")])?;
                            break;
                        }
                        _ => break,
                    }
                }
            }
            "while" | "until" => {
                self.compound_list(&[End::Keyword("do")])?;
                self.compound_list(&[End::Keyword("done")])?;
            }
            "for" => self.for_loop()?,
            "case" => self.case_command()?,
            _ => return self.err("unknown compound command"),
        }
        self.leave();
        // Redirections after a compound command apply to every command in it.
        let mut writes = Vec::new();
        let mut dynamic_write = None;
        let mut stdin = Stdin::Inherited;
        while let Tok::Op(Op::Redir(kind)) = self.peek()? {
            let kind = *kind;
            self.next()?;
            self.redirection(kind, &mut writes, &mut dynamic_write, &mut stdin)?;
        }
        if matches!(stdin, Stdin::Pipe | Stdin::Document) {
            // Its commands were resolved before the redirection was seen.
            let readers: Vec<String> = self.out.commands[start..]
                .iter()
                .filter(|c| reads_program_from_stdin(c))
                .map(|c| c.name().to_owned())
                .collect();
            for name in readers {
                self.opaque(format!("`{name}` reads its program from standard input"));
            }
        }
        if let Some(target) = dynamic_write {
            self.out.opaque.push(format!(
                "writes to a file only known when it runs: {target}"
            ));
        }
        for cmd in &mut self.out.commands[start..] {
            cmd.writes.extend(writes.iter().cloned());
        }
        Ok(())
    }

    fn for_loop(&mut self) -> Result<(), ParseError> {
        match self.next()? {
            Tok::Word(w) if is_name(&w.text) => {}
            _ => return self.err("expected a variable name after `for`"),
        }
        while matches!(self.peek()?, Tok::Newline) {
            self.next()?;
        }
        if let Tok::Word(w) = self.peek()?
            && w.plain
            && w.text == "in"
        {
            self.next()?;
            // The word list; substitutions in it were parsed while lexing.
            while let Tok::Word(_) = self.peek()? {
                self.next()?;
            }
            match self.next()? {
                Tok::Op(Op::Semi) | Tok::Newline => {}
                _ => return self.err("expected `;` or a newline after the `for` word list"),
            }
        } else if matches!(self.peek()?, Tok::Op(Op::Semi)) {
            self.next()?;
        }
        while matches!(self.peek()?, Tok::Newline) {
            self.next()?;
        }
        self.expect_keyword("do")?;
        self.compound_list(&[End::Keyword("done")])?;
        Ok(())
    }

    fn case_command(&mut self) -> Result<(), ParseError> {
        match self.next()? {
            Tok::Word(_) => {}
            _ => return self.err("expected a word after `case`"),
        }
        while matches!(self.peek()?, Tok::Newline) {
            self.next()?;
        }
        self.expect_keyword("in")?;
        loop {
            while matches!(self.peek()?, Tok::Newline) {
                self.next()?;
            }
            match self.next()? {
                Tok::Word(w) if w.plain && w.text == "esac" => return Ok(()),
                Tok::Op(Op::LParen) => match self.next()? {
                    Tok::Word(_) => {}
                    _ => return self.err("expected a `case` pattern"),
                },
                Tok::Word(_) => {}
                _ => return self.err("expected a `case` pattern or `esac`"),
            }
            loop {
                match self.next()? {
                    Tok::Op(Op::RParen) => break,
                    Tok::Op(Op::Pipe) => match self.next()? {
                        Tok::Word(_) => {}
                        _ => return self.err("expected a `case` pattern after `|`"),
                    },
                    _ => return self.err("expected `)` after a `case` pattern"),
                }
            }
            let end = self.compound_list(&[End::DSemi, End::Keyword("esac")])?;
            if end == End::Keyword("esac") {
                return Ok(());
            }
        }
    }

    /// `[[ … ]]` (bash): a test whose operators are arguments, not shell operators.
    fn double_bracket(&mut self) -> Result<(), ParseError> {
        self.next()?;
        let mut args = Vec::new();
        let mut dynamic = false;
        loop {
            match self.next()? {
                Tok::Word(w) if w.plain && w.text == "]]" => break,
                Tok::Word(w) => {
                    dynamic |= w.dynamic;
                    args.push(Arg {
                        text: w.text,
                        dynamic: w.dynamic,
                    });
                }
                Tok::Op(op) => {
                    let text = match op {
                        Op::AndIf => "&&",
                        Op::OrIf => "||",
                        Op::LParen => "(",
                        Op::RParen => ")",
                        Op::Redir(RedirKind::In) => "<",
                        Op::Redir(RedirKind::Out) => ">",
                        _ => return self.err("unexpected operator inside [[ ]]"),
                    };
                    args.push(Arg {
                        text: text.into(),
                        dynamic: false,
                    });
                }
                Tok::Newline | Tok::Eof => return self.err("unterminated [["),
            }
        }
        let cmd = SimpleCommand {
            program: "[[".into(),
            args: args.into_iter().map(|a| a.text).collect(),
            env: Vec::new(),
            wrappers: Vec::new(),
            writes: Vec::new(),
            dynamic,
        };
        self.push(cmd)
    }

    fn redirection(
        &mut self,
        kind: RedirKind,
        writes: &mut Vec<String>,
        dynamic_write: &mut Option<String>,
        stdin: &mut Stdin,
    ) -> Result<(), ParseError> {
        let target = match self.next()? {
            Tok::Word(w) => w,
            _ => return self.err("expected a file name after a redirection"),
        };
        match kind {
            RedirKind::HereDoc { strip_tabs } => {
                self.heredocs.push(PendingHereDoc {
                    delim: target.text,
                    strip_tabs,
                    expand: !target.quoted,
                });
                *stdin = Stdin::Document;
            }
            RedirKind::HereString => *stdin = Stdin::Document,
            RedirKind::In => {
                *stdin = if target.substituted {
                    Stdin::Pipe
                } else {
                    Stdin::File
                }
            }
            RedirKind::DupIn => {}
            RedirKind::DupOut
                if target.text == "-" || target.text.chars().all(|c| c.is_ascii_digit()) => {}
            RedirKind::Out
            | RedirKind::Append
            | RedirKind::Clobber
            | RedirKind::ReadWrite
            | RedirKind::OutErr
            | RedirKind::AppendErr
            | RedirKind::DupOut => {
                if target.dynamic {
                    *dynamic_write = Some(target.text);
                } else if !matches!(
                    target.text.as_str(),
                    "/dev/null" | "/dev/stdout" | "/dev/stderr"
                ) {
                    writes.push(target.text);
                }
            }
        }
        Ok(())
    }

    fn simple_command(&mut self) -> Result<(), ParseError> {
        let mut env = Vec::new();
        let mut argv: Vec<Arg> = Vec::new();
        let mut writes = Vec::new();
        let mut dynamic_write = None;
        let mut stdin = self.stdin;
        let mut dynamic = false;
        loop {
            match self.peek()? {
                Tok::Op(Op::Redir(kind)) => {
                    let kind = *kind;
                    self.next()?;
                    self.redirection(kind, &mut writes, &mut dynamic_write, &mut stdin)?;
                }
                Tok::Word(_) => {
                    let Tok::Word(w) = self.next()? else {
                        return self.err("expected a word");
                    };
                    if argv.is_empty()
                        && let Some(eq) = w.assign
                    {
                        // Only command substitutions in a value change what runs; `$X` in
                        // an environment value leaves the argv known.
                        dynamic |= w.substituted;
                        let name = w.text[..eq - 1].to_owned();
                        let value = w.text[eq..].to_owned();
                        env.push((name, value));
                        continue;
                    }
                    if argv.is_empty()
                        && matches!(self.peek()?, Tok::Op(Op::LParen))
                        && w.plain
                        && is_function_name(&w.text)
                    {
                        return self.function_definition();
                    }
                    argv.push(Arg {
                        text: w.text,
                        dynamic: w.dynamic,
                    });
                }
                _ => break,
            }
        }
        if let Some(target) = dynamic_write {
            self.out.opaque.push(format!(
                "writes to a file only known when it runs: {target}"
            ));
        }
        if argv.is_empty() {
            if env.is_empty() && writes.is_empty() {
                return self.err("expected a command");
            }
            if writes.is_empty() {
                // Only assignments: sets shell variables, runs nothing.
                return Ok(());
            }
            // `> file` alone is `: > file`: it truncates the file.
            argv.push(Arg {
                text: ":".into(),
                dynamic: false,
            });
        }
        self.resolve(Invocation {
            argv,
            env,
            writes,
            wrappers: Vec::new(),
            dynamic,
            stdin,
        })
    }

    /// `name() compound-command`: the body's commands are collected (they run when called).
    fn function_definition(&mut self) -> Result<(), ParseError> {
        self.next()?; // (
        match self.next()? {
            Tok::Op(Op::RParen) => {}
            _ => return self.err("expected `)` in a function definition"),
        }
        while matches!(self.peek()?, Tok::Newline) {
            self.next()?;
        }
        // `f() g() h() …` recurses: it counts as nesting.
        self.enter()?;
        self.command()?;
        self.leave();
        Ok(())
    }

    fn push(&mut self, cmd: SimpleCommand) -> Result<(), ParseError> {
        if self.out.commands.len() >= MAX_COMMANDS {
            return Err(ParseError::TooManyCommands { max: MAX_COMMANDS });
        }
        self.out.commands.push(cmd);
        Ok(())
    }

    fn opaque(&mut self, reason: String) {
        if !self.out.opaque.contains(&reason) {
            self.out.opaque.push(reason);
        }
    }

    // ---- wrappers ----------------------------------------------------------------------------

    /// Unwraps wrappers and pushes the command(s) an invocation runs.
    fn resolve(&mut self, mut inv: Invocation) -> Result<(), ParseError> {
        let mut i = 0usize;
        loop {
            if inv.wrappers.len() > MAX_WRAPPERS {
                return Err(ParseError::TooManyWrappers {
                    max: MAX_WRAPPERS,
                    near: inv.argv.get(i).map(|a| a.text.clone()).unwrap_or_default(),
                });
            }
            let Some(program) = inv.argv.get(i) else {
                return Err(ParseError::Syntax("a wrapper without a command".into()));
            };
            if program.dynamic {
                self.opaque(format!(
                    "the program is only known when it runs: {}",
                    program.text
                ));
                return Ok(());
            }
            let name = base_name(&program.text).to_owned();
            let rest = &inv.argv[i + 1..];
            let under_input = inv
                .wrappers
                .iter()
                .any(|w| w == "xargs" || w == "find -exec");
            if under_input && (is_shell(&name) || is_interpreter(&name)) && {
                let plain: Vec<String> = rest.iter().map(|a| a.text.clone()).collect();
                let inline =
                    inline_code_flag(&name, &plain).is_some() || plain.iter().any(|a| a == "-m");
                // Without inline code, the program file is the first word that is not an
                // option, or (none given) the first word xargs appends from its input.
                let script = rest.iter().find(|a| !a.text.starts_with('-'));
                !inline && script.is_none_or(|s| s.dynamic)
            } {
                self.opaque(format!(
                    "`{name}` under `{}` runs program files named by its input",
                    inv.wrappers.join(" ")
                ));
                return Ok(());
            }
            let next = match name.as_str() {
                "sudo" | "doas" => {
                    let (n, _) = self.options(
                        &name,
                        rest,
                        "ughpCDrtTUc",
                        &[
                            "--user",
                            "--group",
                            "--host",
                            "--prompt",
                            "--close-from",
                            "--chdir",
                            "--role",
                            "--type",
                            "--other-user",
                            "--command-timeout",
                        ],
                    )?;
                    let mut n = n;
                    while let Some(a) = rest.get(n)
                        && let Some((k, v)) = assignment(&a.text)
                    {
                        inv.env.push((k, v));
                        n += 1;
                    }
                    Some(n)
                }
                "env" => {
                    let mut n = 0;
                    while let Some(a) = rest.get(n) {
                        if a.dynamic {
                            self.opaque(format!("cannot tell what `env` runs: {}", a.text));
                            return Ok(());
                        }
                        let t = a.text.as_str();
                        if t == "-"
                            || t == "-i"
                            || t == "-0"
                            || t == "--ignore-environment"
                            || t == "--null"
                        {
                            n += 1;
                        } else if t == "-u" || t == "-C" || t == "--unset" || t == "--chdir" {
                            n += 2;
                        } else if t.starts_with("-S") || t.starts_with("--split-string") {
                            self.opaque("`env -S` splits a string into a command".into());
                            return Ok(());
                        } else if t.starts_with("--") || (t.starts_with('-') && t.len() > 1) {
                            n += 1;
                        } else if let Some((k, v)) = assignment(t) {
                            inv.env.push((k, v));
                            n += 1;
                        } else {
                            break;
                        }
                    }
                    Some(n)
                }
                "timeout" => {
                    let (n, _) = self.options(&name, rest, "sk", &["--signal", "--kill-after"])?;
                    // The duration, then the command.
                    Some(n + 1)
                }
                "nice" => Some(self.options(&name, rest, "n", &["--adjustment"])?.0),
                "nohup" | "setsid" | "coproc" => Some(self.options(&name, rest, "", &[])?.0),
                "stdbuf" => Some(
                    self.options(&name, rest, "ioe", &["--input", "--output", "--error"])?
                        .0,
                ),
                "ionice" => {
                    let (n, opts) = self.options(
                        &name,
                        rest,
                        "cnpPu",
                        &["--class", "--classdata", "--pid", "--pgid", "--uid"],
                    )?;
                    if opts.iter().any(|(o, _)| {
                        matches!(
                            o.as_str(),
                            "-p" | "-P" | "-u" | "--pid" | "--pgid" | "--uid"
                        )
                    }) {
                        None
                    } else {
                        Some(n)
                    }
                }
                "time" => {
                    let (n, opts) = self.options(&name, rest, "fo", &["--format", "--output"])?;
                    for (o, v) in opts {
                        if matches!(o.as_str(), "-o" | "--output")
                            && let Some(v) = v
                        {
                            inv.writes.push(v);
                        }
                    }
                    Some(n)
                }
                "command" => {
                    let (n, opts) = self.options(&name, rest, "", &[])?;
                    if opts.iter().any(|(o, _)| o == "-v" || o == "-V") {
                        None
                    } else {
                        Some(n)
                    }
                }
                "exec" => Some(self.options(&name, rest, "a", &[])?.0),
                "xargs" => return self.xargs(inv, i),
                "find" => return self.find(inv, i),
                "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash" | "fish" | "csh"
                | "tcsh" | "pwsh" | "powershell" => {
                    return self.shell(inv, i);
                }
                "su" => return self.su(inv, i),
                "watch" => return self.watch(inv, i),
                "eval" => {
                    self.opaque("`eval` runs text as shell code".into());
                    return Ok(());
                }
                "source" | "." => {
                    let file = rest.first().map(|a| a.text.as_str()).unwrap_or("");
                    self.opaque(format!("`{name}` runs the shell code in {file:?}"));
                    return Ok(());
                }
                "trap" => {
                    self.opaque("`trap` runs text as shell code later".into());
                    return Ok(());
                }
                _ if is_interpreter(&name) => {
                    if matches!(inv.stdin, Stdin::Pipe | Stdin::Document)
                        && interpreter_reads_stdin(rest)
                    {
                        self.opaque(format!("`{name}` reads its program from standard input"));
                        return Ok(());
                    }
                    let plain: Vec<String> = rest.iter().map(|a| a.text.clone()).collect();
                    if inline_code_flag(&name, &plain).is_none()
                        && let Some(script) =
                            rest.iter().find(|a| !a.text.starts_with('-') || a.dynamic)
                        && script.dynamic
                    {
                        self.opaque(format!(
                            "`{name}` runs a program file only known when it runs: {}",
                            script.text
                        ));
                        return Ok(());
                    }
                    None
                }
                _ => None,
            };
            match next {
                Some(n) if i + 1 + n < inv.argv.len() => {
                    inv.wrappers.push(name);
                    i += 1 + n;
                }
                _ => return self.finish(inv, i),
            }
        }
    }

    /// Pushes `argv[i..]` as the command.
    fn finish(&mut self, inv: Invocation, i: usize) -> Result<(), ParseError> {
        let mut argv = inv.argv.into_iter().skip(i);
        let Some(program) = argv.next() else {
            return Err(ParseError::Syntax("a wrapper without a command".into()));
        };
        let args: Vec<Arg> = argv.collect();
        let name = base_name(&program.text).to_owned();
        self.check_env(&name, &inv.env);
        if name == "git" {
            self.check_git_config(&args);
        }
        let dynamic = inv.dynamic || args.iter().any(|a| a.dynamic);
        self.push(SimpleCommand {
            program: program.text,
            args: args.into_iter().map(|a| a.text).collect(),
            env: inv.env,
            wrappers: inv.wrappers,
            writes: inv.writes,
            dynamic,
        })
    }

    /// Environment variables that load or run other code make a known command run unknown code.
    fn check_env(&mut self, program: &str, env: &[(String, String)]) {
        for (k, _) in env {
            if code_env(k) {
                self.opaque(format!(
                    "`{k}=` makes `{program}` run code only known when it runs"
                ));
            }
        }
    }

    /// `git -c core.pager=… log` runs the pager as a shell command: such keys are code.
    fn check_git_config(&mut self, args: &[Arg]) {
        let mut k = 0;
        while let Some(a) = args.get(k) {
            let t = a.text.as_str();
            let setting = if t == "-c" || t == "--config-env" {
                k += 1;
                args.get(k).map(|a| a.text.as_str())
            } else if let Some(v) = t.strip_prefix("--config-env=") {
                Some(v)
            } else if let Some(v) = t.strip_prefix("-c") {
                Some(v)
            } else if t.starts_with('-') {
                None
            } else {
                // The subcommand: options after it are its own.
                break;
            };
            if let Some(setting) = setting {
                let key = setting
                    .split('=')
                    .next()
                    .unwrap_or(setting)
                    .to_ascii_lowercase();
                if git_config_runs_code(&key) {
                    self.opaque(format!(
                        "`git -c {key}=…` runs a command given in the configuration"
                    ));
                }
            }
            k += 1;
        }
    }

    /// Skips a wrapper's options. `short_value`: short options taking a value; `long_value`:
    /// long options taking a value when written without `=`. Returns the index of the first
    /// non-option argument in `args` and the options seen (with their values).
    #[allow(clippy::type_complexity)]
    fn options(
        &mut self,
        wrapper: &str,
        args: &[Arg],
        short_value: &str,
        long_value: &[&str],
    ) -> Result<(usize, Vec<(String, Option<String>)>), ParseError> {
        let mut seen = Vec::new();
        let mut n = 0;
        while let Some(a) = args.get(n) {
            let t = a.text.as_str();
            if a.dynamic && t.starts_with('-') {
                return Err(ParseError::Syntax(format!(
                    "cannot tell which options `{wrapper}` gets: {t}"
                )));
            }
            if t == "--" {
                return Ok((n + 1, seen));
            }
            if let Some(long) = t.strip_prefix("--") {
                if long.contains('=') {
                    let (k, v) = t.split_once('=').unwrap_or((t, ""));
                    seen.push((k.to_owned(), Some(v.to_owned())));
                    n += 1;
                } else if long_value.contains(&t) {
                    seen.push((t.to_owned(), args.get(n + 1).map(|a| a.text.clone())));
                    n += 2;
                } else {
                    seen.push((t.to_owned(), None));
                    n += 1;
                }
                continue;
            }
            if t.len() > 1 && t.starts_with('-') {
                let cluster: Vec<char> = t.chars().skip(1).collect();
                n += 1;
                for (k, c) in cluster.iter().enumerate() {
                    if short_value.contains(*c) {
                        let attached: String = cluster[k + 1..].iter().collect();
                        if attached.is_empty() {
                            seen.push((format!("-{c}"), args.get(n).map(|a| a.text.clone())));
                            n += 1;
                        } else {
                            seen.push((format!("-{c}"), Some(attached)));
                        }
                        break;
                    }
                    seen.push((format!("-{c}"), None));
                }
                continue;
            }
            break;
        }
        Ok((n, seen))
    }

    fn xargs(&mut self, mut inv: Invocation, i: usize) -> Result<(), ParseError> {
        let rest: Vec<Arg> = inv.argv[i + 1..].to_vec();
        let mut n = 0;
        let mut replace: Option<String> = None;
        while let Some(a) = rest.get(n) {
            let t = a.text.as_str();
            if a.dynamic && t.starts_with('-') {
                return Err(ParseError::Syntax(format!(
                    "cannot tell which options `xargs` gets: {t}"
                )));
            }
            if t == "--" {
                n += 1;
                break;
            }
            if !t.starts_with('-') || t == "-" {
                break;
            }
            n += 1;
            if let Some(long) = t.strip_prefix("--") {
                let (k, v) = long
                    .split_once('=')
                    .map_or((long, None), |(k, v)| (k, Some(v)));
                match k {
                    "replace" => replace = Some(v.unwrap_or("{}").to_owned()),
                    "arg-file" | "delimiter" | "max-lines" | "max-args" | "max-procs"
                    | "max-chars" | "process-slot-var"
                        if v.is_none() =>
                    {
                        n += 1
                    }
                    _ => {}
                }
                continue;
            }
            let cluster: Vec<char> = t.chars().skip(1).collect();
            for (k, c) in cluster.iter().enumerate() {
                let attached: String = cluster[k + 1..].iter().collect();
                match c {
                    'a' | 'd' | 'E' | 'I' | 'L' | 'n' | 'P' | 's' => {
                        let value = if attached.is_empty() {
                            n += 1;
                            rest.get(n - 1).map(|a| a.text.clone()).unwrap_or_default()
                        } else {
                            attached
                        };
                        if *c == 'I' {
                            replace = Some(value);
                        }
                        break;
                    }
                    'i' => {
                        replace = Some(if attached.is_empty() {
                            "{}".into()
                        } else {
                            attached
                        });
                        break;
                    }
                    'e' | 'l' => break,
                    _ => {}
                }
            }
        }
        inv.wrappers.push("xargs".into());
        // The command gets arguments from standard input: never known before it runs.
        inv.dynamic = true;
        let mut argv: Vec<Arg> = rest[n.min(rest.len())..].to_vec();
        if argv.is_empty() {
            argv.push(Arg {
                text: "echo".into(),
                dynamic: false,
            });
        }
        if let Some(r) = replace.filter(|r| !r.is_empty()) {
            for a in argv.iter_mut().skip(1) {
                if a.text.contains(&r) {
                    a.dynamic = true;
                }
            }
        }
        self.resolve(Invocation { argv, ..inv })
    }

    fn find(&mut self, inv: Invocation, i: usize) -> Result<(), ParseError> {
        let args = &inv.argv[i + 1..];
        let mut execs: Vec<Vec<Arg>> = Vec::new();
        let mut k = 0;
        while k < args.len() {
            if matches!(
                args[k].text.as_str(),
                "-exec" | "-execdir" | "-ok" | "-okdir"
            ) && !args[k].dynamic
            {
                let mut cmd = Vec::new();
                k += 1;
                while k < args.len() && args[k].text != ";" && args[k].text != "+" {
                    let mut a = args[k].clone();
                    // GNU find replaces `{}` anywhere in an argument with a file name.
                    a.dynamic |= a.text.contains("{}");
                    cmd.push(a);
                    k += 1;
                }
                if k >= args.len() {
                    return Err(ParseError::Syntax(
                        "`find -exec` without a closing `;` or `+`".into(),
                    ));
                }
                if cmd.is_empty() {
                    return Err(ParseError::Syntax("`find -exec` without a command".into()));
                }
                execs.push(cmd);
            }
            k += 1;
        }
        let mut wrappers = inv.wrappers.clone();
        wrappers.push("find -exec".into());
        for argv in execs {
            self.resolve(Invocation {
                argv,
                env: inv.env.clone(),
                writes: Vec::new(),
                wrappers: wrappers.clone(),
                dynamic: false,
                stdin: Stdin::Inherited,
            })?;
        }
        self.finish(inv, i)
    }

    fn shell(&mut self, inv: Invocation, i: usize) -> Result<(), ParseError> {
        let name = base_name(&inv.argv[i].text).to_owned();
        let args = &inv.argv[i + 1..];
        let mut has_c = false;
        let mut from_stdin = false;
        let mut n = 0;
        while let Some(a) = args.get(n) {
            let t = a.text.as_str();
            if a.dynamic && (t.starts_with('-') || t.starts_with('+')) {
                return Err(ParseError::Syntax(format!(
                    "cannot tell which options `{name}` gets: {t}"
                )));
            }
            if t == "--" || t == "-" {
                n += 1;
                break;
            }
            if t.starts_with("--") {
                n += if matches!(t, "--rcfile" | "--init-file") {
                    2
                } else {
                    1
                };
                continue;
            }
            if t.len() > 1 && (t.starts_with('-') || t.starts_with('+')) {
                n += 1;
                if t.ends_with('o') || t.ends_with('O') {
                    // `-o pipefail`, `-euxo pipefail`: the option name is the next word.
                    n += 1;
                }
                if name == "pwsh" || name == "powershell" {
                    has_c |= t.eq_ignore_ascii_case("-c") || t.eq_ignore_ascii_case("-command");
                    continue;
                }
                has_c |= t.starts_with('-') && t.contains('c');
                from_stdin |= t.starts_with('-') && t.contains('s');
                continue;
            }
            break;
        }
        let posix = matches!(
            name.as_str(),
            "sh" | "bash" | "zsh" | "dash" | "ksh" | "mksh" | "ash"
        );
        if has_c {
            let Some(script) = args.get(n) else {
                return Err(ParseError::Syntax(format!(
                    "`{name} -c` without a command string"
                )));
            };
            if script.dynamic {
                self.opaque(format!(
                    "`{name} -c` runs a string only known when it runs: {}",
                    script.text
                ));
                return Ok(());
            }
            if !posix {
                self.opaque(format!("`{name} -c` runs code in a language other than sh"));
                return Ok(());
            }
            self.enter()?;
            let start = self.out.commands.len();
            let depth = self.depth;
            let mut inner = Parser::new(&script.text, depth, self.out);
            // `curl … | bash -c 'sh'`: the inner shell reads the same pipe.
            inner.stdin = inv.stdin;
            inner.parse_all()?;
            self.leave();
            let mut wrappers = inv.wrappers.clone();
            wrappers.push(format!("{name} -c"));
            let inner_names: Vec<String> = self.out.commands[start..]
                .iter()
                .map(|c| c.name().to_owned())
                .collect();
            for n in inner_names {
                self.check_env(&n, &inv.env);
            }
            for cmd in &mut self.out.commands[start..] {
                let mut env = inv.env.clone();
                env.append(&mut cmd.env);
                cmd.env = env;
                let mut w = wrappers.clone();
                w.append(&mut cmd.wrappers);
                cmd.wrappers = w;
                cmd.writes.extend(inv.writes.iter().cloned());
                cmd.dynamic |= inv.dynamic;
            }
            return Ok(());
        }
        let has_script = n < args.len() && !from_stdin;
        if let Some(script) = args.get(n).filter(|a| has_script && a.dynamic) {
            self.opaque(format!(
                "`{name}` runs a script only known when it runs: {}",
                script.text
            ));
            return Ok(());
        }
        if !has_script && matches!(inv.stdin, Stdin::Pipe | Stdin::Document) {
            self.opaque(format!("`{name}` reads its program from standard input"));
            return Ok(());
        }
        self.finish(inv, i)
    }

    /// `watch CMD ARGS…` runs `sh -c "CMD ARGS…"` (the words joined by spaces) again and
    /// again; `watch -x` runs them as an argv.
    fn watch(&mut self, mut inv: Invocation, i: usize) -> Result<(), ParseError> {
        let name = base_name(&inv.argv[i].text).to_owned();
        let rest = inv.argv[i + 1..].to_vec();
        let (n, opts) = self.options(
            &name,
            &rest,
            "nqd",
            &["--interval", "--differences", "--equexit"],
        )?;
        if n >= rest.len() {
            return self.finish(inv, i);
        }
        inv.wrappers.push(name);
        let argv = rest[n..].to_vec();
        if opts.iter().any(|(o, _)| o == "-x" || o == "--exec") {
            return self.resolve(Invocation { argv, ..inv });
        }
        let dynamic = argv.iter().any(|a| a.dynamic);
        let script = argv
            .iter()
            .map(|a| a.text.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let argv = vec![
            Arg {
                text: "sh".into(),
                dynamic: false,
            },
            Arg {
                text: "-c".into(),
                dynamic: false,
            },
            Arg {
                text: script,
                dynamic,
            },
        ];
        self.shell(Invocation { argv, ..inv }, 0)
    }

    fn su(&mut self, mut inv: Invocation, i: usize) -> Result<(), ParseError> {
        let args = &inv.argv[i + 1..];
        let mut script = None;
        let mut k = 0;
        while k < args.len() {
            let t = args[k].text.as_str();
            if t == "-c" || t == "--command" {
                script = args.get(k + 1).cloned();
                break;
            }
            if let Some(s) = t.strip_prefix("--command=") {
                script = Some(Arg {
                    text: s.to_owned(),
                    dynamic: args[k].dynamic,
                });
                break;
            }
            k += 1;
        }
        let Some(script) = script else {
            return self.finish(inv, i);
        };
        inv.wrappers.push("su".into());
        let argv = vec![
            Arg {
                text: "sh".into(),
                dynamic: false,
            },
            Arg {
                text: "-c".into(),
                dynamic: false,
            },
            script,
        ];
        self.shell(Invocation { argv, ..inv }, 0)
    }
}

/// Variables that make a program load or run code other than its own.
fn code_env(name: &str) -> bool {
    #[rustfmt::skip]
    const NAMES: &[&str] = &[
        "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES",
        "DYLD_LIBRARY_PATH", "BASH_ENV", "ENV", "PROMPT_COMMAND", "SHELLOPTS", "PS4", "PAGER",
        "EDITOR", "VISUAL", "MANPAGER", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EDITOR",
        "GIT_SEQUENCE_EDITOR", "GIT_PAGER", "GIT_EXTERNAL_DIFF", "GIT_ASKPASS", "SSH_ASKPASS",
        "GIT_PROXY_COMMAND", "GIT_EXEC_PATH", "GIT_TEMPLATE_DIR", "GIT_DIR", "PYTHONPATH",
        "PYTHONSTARTUP", "PYTHONHOME", "NODE_OPTIONS", "NODE_PATH", "PERL5OPT", "PERL5LIB",
        "PERLLIB", "RUBYOPT", "RUBYLIB", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "RUSTC_WRAPPER",
        "RUSTC", "CARGO_BUILD_RUSTC_WRAPPER", "CC", "CXX", "LESSOPEN", "LESSCLOSE",
    ];
    NAMES.contains(&name) || name.starts_with("GIT_CONFIG") || name.starts_with("BASH_FUNC_")
}

/// Git configuration keys whose value is a command git runs.
fn git_config_runs_code(key: &str) -> bool {
    key.starts_with("alias.")
        || key.starts_with("pager.")
        || key.starts_with("filter.")
        || key.starts_with("include")
        || [
            "core.pager",
            "core.editor",
            "core.sshcommand",
            "core.fsmonitor",
            "core.hookspath",
            "core.gitproxy",
            "core.askpass",
            "sequence.editor",
            "diff.external",
            "gpg.program",
            "credential.helper",
            "uploadpack.packobjectshook",
            "core.alternaterefscommand",
        ]
        .contains(&key)
        || key.ends_with(".command")
        || key.ends_with(".textconv")
        || key.ends_with(".program")
        || key.ends_with(".helper")
        || key.ends_with(".cmd")
        || key.ends_with(".tool")
}

fn is_function_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c == '_' || c == '-' || c == '.' || c.is_ascii_alphanumeric())
}

fn assignment(t: &str) -> Option<(String, String)> {
    let (k, v) = t.split_once('=')?;
    is_name(k).then(|| (k.to_owned(), v.to_owned()))
}

/// Interpreters that run code given inline or read from standard input.
#[rustfmt::skip]
pub(crate) const INTERPRETERS: &[&str] = &[
    "python", "python2", "python3", "pypy", "pypy3", "node", "nodejs", "ruby", "perl", "php",
    "deno", "bun", "lua", "luajit", "Rscript", "osascript", "tclsh", "wish", "irb", "jshell",
    "groovy", "julia", "awk", "gawk", "mawk", "nawk",
];

/// Shells: their `-c` strings are code.
#[rustfmt::skip]
pub(crate) const SHELLS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "pwsh", "powershell",
];

/// Is `name` an interpreter (`python3.12` counts as `python3`)?
pub(crate) fn is_interpreter(name: &str) -> bool {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    INTERPRETERS.contains(&name) || INTERPRETERS.contains(&trimmed)
}

/// Is `name` a shell?
pub(crate) fn is_shell(name: &str) -> bool {
    SHELLS.contains(&name)
}

/// Flags that give an interpreter its program inline.
pub(crate) fn inline_code_flag(name: &str, args: &[String]) -> Option<String> {
    let letters: &[char] = if is_shell(name) {
        &['c']
    } else {
        match name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.') {
            "python" | "pypy" => &['c'],
            "perl" | "ruby" => &['e', 'E'],
            "node" | "nodejs" | "bun" => &['e', 'p'],
            "php" => &['r'],
            "lua" | "luajit" | "Rscript" | "osascript" => &['e'],
            _ => &[],
        }
    };
    for a in args {
        if matches!(a.as_str(), "--eval" | "--print" | "-Command" | "-command") {
            return Some(a.clone());
        }
        if let Some(cluster) = a.strip_prefix('-')
            && !cluster.starts_with('-')
            && cluster.chars().any(|c| letters.contains(&c))
        {
            return Some(a.clone());
        }
        if !a.starts_with('-') {
            // A script file: later arguments are the script's.
            break;
        }
    }
    if name == "deno" && args.first().is_some_and(|a| a == "eval") {
        return Some("eval".into());
    }
    None
}

/// Would this command read its program from standard input if it were a pipe?
fn reads_program_from_stdin(cmd: &SimpleCommand) -> bool {
    let args: Vec<Arg> = cmd
        .args
        .iter()
        .map(|a| Arg {
            text: a.clone(),
            dynamic: false,
        })
        .collect();
    if is_shell(cmd.name()) {
        return !cmd
            .args
            .iter()
            .any(|a| !a.starts_with('-') && !a.starts_with('+'))
            || cmd.args.iter().any(|a| a == "-s" || a == "-");
    }
    is_interpreter(cmd.name()) && interpreter_reads_stdin(&args)
}

/// Does an interpreter with these arguments read its program from standard input?
fn interpreter_reads_stdin(args: &[Arg]) -> bool {
    let mut inline = false;
    for a in args {
        let t = a.text.as_str();
        if t == "-" {
            return true;
        }
        if !t.starts_with('-') {
            return false;
        }
        inline |= matches!(
            t,
            "-c" | "-e" | "-E" | "-m" | "-r" | "-p" | "--eval" | "--print"
        ) || (t.len() > 2 && !t.starts_with("--") && t.contains(['c', 'e', 'm']));
    }
    !inline
}

// ---------------------------------------------------------------------------------------------
// Argv patterns
// ---------------------------------------------------------------------------------------------

/// One piece of a pattern word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GTok {
    Lit(char),
    /// `*`: any run of characters without `/`.
    Star,
    /// `**`: any run of characters.
    DStar,
    /// `?`: one character, not `/`.
    Any,
}

type GWord = Vec<GTok>;

fn literal(text: &str) -> GWord {
    text.chars().map(GTok::Lit).collect()
}

fn literal_text(w: &[GTok]) -> Option<String> {
    w.iter()
        .map(|t| if let GTok::Lit(c) = t { Some(*c) } else { None })
        .collect()
}

fn has_wildcard(w: &[GTok]) -> bool {
    w.iter().any(|t| !matches!(t, GTok::Lit(_)))
}

fn render(w: &[GTok]) -> String {
    w.iter()
        .map(|t| match t {
            GTok::Lit(c) => *c,
            GTok::Star | GTok::DStar => '*',
            GTok::Any => '?',
        })
        .collect()
}

/// Does `text` match the glob word? Wildcards never match a `..` path segment, so `src/*` is
/// no way out of `src`.
fn glob_match(w: &[GTok], text: &str) -> bool {
    if !has_wildcard(w) {
        return literal_text(w).is_some_and(|l| l == text);
    }
    if text.split('/').any(|seg| seg == "..") {
        return false;
    }
    let t: Vec<char> = text.chars().collect();
    // dp[j]: w[..i] matches t[..j].
    let mut dp = vec![false; t.len() + 1];
    dp[0] = true;
    for tok in w {
        let mut next = vec![false; t.len() + 1];
        match tok {
            GTok::Lit(c) => {
                for j in 0..t.len() {
                    next[j + 1] = dp[j] && t[j] == *c;
                }
            }
            GTok::Any => {
                for j in 0..t.len() {
                    next[j + 1] = dp[j] && t[j] != '/';
                }
            }
            GTok::Star | GTok::DStar => {
                let cross = *tok == GTok::DStar;
                next[0] = dp[0];
                for j in 0..t.len() {
                    next[j + 1] = dp[j + 1] || (next[j] && (cross || t[j] != '/'));
                }
            }
        }
        dp = next;
    }
    dp[t.len()]
}

/// Splits pattern text into shell words; unquoted `*`, `**` and `?` are wildcards.
fn pattern_words(text: &str) -> Result<Vec<GWord>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut cur: Option<GWord> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                words.extend(cur.take());
                i += 1;
            }
            '\'' => {
                let w = cur.get_or_insert_with(Vec::new);
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated single quote".into()),
                        Some('\'') => break,
                        Some(ch) => w.push(GTok::Lit(*ch)),
                    }
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                let w = cur.get_or_insert_with(Vec::new);
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated double quote".into()),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('"' | '\\' | '$' | '`')) => {
                            i += 1;
                            w.push(GTok::Lit(chars[i]));
                        }
                        Some(ch) => w.push(GTok::Lit(*ch)),
                    }
                    i += 1;
                }
                i += 1;
            }
            '\\' => {
                let w = cur.get_or_insert_with(Vec::new);
                match chars.get(i + 1) {
                    Some(n) => w.push(GTok::Lit(*n)),
                    None => return Err("trailing backslash".into()),
                }
                i += 2;
            }
            '*' => {
                let w = cur.get_or_insert_with(Vec::new);
                if chars.get(i + 1) == Some(&'*') {
                    w.push(GTok::DStar);
                    i += 2;
                } else {
                    w.push(GTok::Star);
                    i += 1;
                }
            }
            '?' => {
                cur.get_or_insert_with(Vec::new).push(GTok::Any);
                i += 1;
            }
            _ => {
                cur.get_or_insert_with(Vec::new).push(GTok::Lit(c));
                i += 1;
            }
        }
    }
    words.extend(cur);
    Ok(words)
}

fn quote_word(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%^".contains(c));
    if safe {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Programs whose arguments form an expression where order is meaning (`find . -name x
/// -delete` is not `find . -delete -name x`): every argument is compared in place.
const ORDER_SENSITIVE: &[&str] = &["find", "test", "[", "[[", "expr"];

/// Programs whose single-dash words are whole options (`-name`, `-run`), not clusters.
#[rustfmt::skip]
const NO_CLUSTERS: &[&str] = &[
    "java", "javac", "go", "gcc", "g++", "cc", "c++", "clang", "clang++", "ld", "ffmpeg",
    "xcodebuild",
];

/// Long and short spellings of one option, per program: the first spelling is canonical.
#[rustfmt::skip]
const SYNONYMS: &[(&str, &[&[&str]])] = &[
    ("rm", &[&["-r", "-R", "--recursive"], &["-f", "--force"], &["-i", "--interactive"], &["-d", "--dir"], &["-v", "--verbose"]]),
    ("cp", &[&["-r", "-R", "--recursive"], &["-f", "--force"], &["-a", "--archive"], &["-v", "--verbose"], &["-n", "--no-clobber"]]),
    ("mv", &[&["-f", "--force"], &["-n", "--no-clobber"], &["-v", "--verbose"]]),
    ("chmod", &[&["-R", "--recursive"]]),
    ("chown", &[&["-R", "--recursive"]]),
    ("chgrp", &[&["-R", "--recursive"]]),
    ("mkdir", &[&["-p", "--parents"]]),
    ("ln", &[&["-s", "--symbolic"], &["-f", "--force"]]),
    ("git", &[&["-f", "--force"], &["-n", "--dry-run"], &["-d", "--delete"], &["-m", "--message"], &["-a", "--all"], &["-q", "--quiet"], &["-v", "--verbose"]]),
    ("cargo", &[&["-p", "--package"], &["-r", "--release"], &["-F", "--features"], &["-j", "--jobs"], &["-q", "--quiet"], &["-v", "--verbose"]]),
    ("npm", &[&["-g", "--global"], &["-D", "--save-dev"], &["-f", "--force"]]),
    ("sed", &[&["-i", "--in-place"], &["-e", "--expression"], &["-n", "--quiet", "--silent"]]),
    ("curl", &[&["-o", "--output"], &["-X", "--request"], &["-d", "--data"], &["-H", "--header"], &["-s", "--silent"], &["-L", "--location"]]),
    ("ls", &[&["-a", "--all"], &["-R", "--recursive"]]),
    ("grep", &[&["-r", "--recursive"], &["-i", "--ignore-case"], &["-e", "--regexp"]]),
    ("rsync", &[&["-r", "--recursive"], &["-a", "--archive"], &["-n", "--dry-run"]]),
    ("kubectl", &[&["-n", "--namespace"], &["-f", "--filename"]]),
    ("docker", &[&["-v", "--volume"], &["-e", "--env"], &["-p", "--publish"], &["-f", "--force"]]),
];

/// Options that take a value as the next word (canonical spelling), per program: the value is
/// kept with its option, so `git -C dir push` is `git push` with `-C=dir`.
#[rustfmt::skip]
const VALUE_FLAGS: &[(&str, &[&str])] = &[
    ("git", &["-C", "-c", "--git-dir", "--work-tree", "--namespace", "-m", "-b", "-B", "--format"]),
    ("cargo", &["-p", "-F", "-j", "--manifest-path", "--target", "--target-dir", "--bin", "--test", "--example", "--bench", "--config", "-Z", "--color", "--profile"]),
    ("npm", &["--prefix", "-w", "--workspace"]),
    ("curl", &["-o", "-X", "-d", "-H", "-u", "-A", "-e", "-T", "-F", "--data-binary", "--data-raw", "--url"]),
    ("sed", &["-e", "-f"]),
    ("grep", &["-e", "-f", "-m", "-A", "-B", "-C", "--include", "--exclude"]),
    ("kubectl", &["-n", "-f", "-o", "-l", "--context", "-c"]),
    ("docker", &["-v", "-e", "-p", "-w", "--name", "--network", "-u", "--entrypoint"]),
    ("tar", &["-C", "-f"]),
    ("ssh", &["-i", "-p", "-l", "-o", "-F", "-J", "-L", "-R", "-D"]),
];

fn canonical_flag(program: &str, flag: &str) -> String {
    let groups = SYNONYMS
        .iter()
        .filter(|(p, _)| *p == program)
        .flat_map(|(_, groups)| groups.iter());
    let mut abbreviated = Vec::new();
    for group in groups {
        if group.contains(&flag) {
            return group[0].to_owned();
        }
        // GNU getopt takes an unambiguous prefix of a long option: `--rec` is `--recursive`.
        if flag.len() >= 4
            && flag.starts_with("--")
            && group
                .iter()
                .any(|s| s.starts_with("--") && s.starts_with(flag))
        {
            abbreviated.push(group[0]);
        }
    }
    match abbreviated.as_slice() {
        [only] => (*only).to_owned(),
        _ => flag.to_owned(),
    }
}

fn takes_value(program: &str, canonical: &str) -> bool {
    VALUE_FLAGS
        .iter()
        .any(|(p, flags)| *p == program && flags.contains(&canonical))
}

#[derive(Debug, Clone)]
struct FlagItem {
    name: String,
    value: Option<GWord>,
    /// How many positional words come before it.
    group: usize,
}

#[derive(Debug, Clone, Default)]
struct Analyzed {
    flags: Vec<FlagItem>,
    positionals: Vec<GWord>,
}

/// Splits arguments into options (clusters split, synonyms canonical, values attached) and
/// positional words. `Err` names a word that cannot be an option name (a wildcard in it).
///
/// `exact`: the pattern has no trailing `*`; only then are the arguments of an expression
/// program (`find`) all compared in place. With a trailing `*`, `find -delete *` must still
/// see `-delete` wherever it is, so its options are options (never clusters).
fn analyze(program: &str, words: &[GWord], exact: bool) -> Result<Analyzed, String> {
    let mut out = Analyzed::default();
    let expression = ORDER_SENSITIVE.contains(&program);
    let order_sensitive = expression && exact;
    let no_clusters = expression || NO_CLUSTERS.contains(&program);
    let mut options_done = false;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        i += 1;
        let is_option = !order_sensitive
            && !options_done
            && w.len() > 1
            && w.first() == Some(&GTok::Lit('-'))
            && render(w) != "--";
        if !is_option {
            if render(w) == "--" && !has_wildcard(w) {
                options_done = true;
            }
            out.positionals.push(w.clone());
            continue;
        }
        let group = out.positionals.len();
        if w.get(1) == Some(&GTok::Lit('-')) {
            let eq = w.iter().position(|t| *t == GTok::Lit('='));
            let name_part = &w[..eq.unwrap_or(w.len())];
            let name = literal_text(name_part)
                .ok_or_else(|| format!("a wildcard in the option {:?}", render(w)))?;
            let name = canonical_flag(program, &name);
            let value = match eq {
                Some(e) => Some(w[e + 1..].to_vec()),
                None if takes_value(program, &name) => {
                    i += 1;
                    words.get(i - 1).cloned()
                }
                None => None,
            };
            out.flags.push(FlagItem { name, value, group });
            continue;
        }
        let body = &w[1..];
        let numeric = matches!(body.first(), Some(GTok::Lit(c)) if c.is_ascii_digit());
        if numeric || no_clusters || body.len() == 1 {
            let name = literal_text(w)
                .ok_or_else(|| format!("a wildcard in the option {:?}", render(w)))?;
            let name = canonical_flag(program, &name);
            let value = if takes_value(program, &name) {
                i += 1;
                words.get(i - 1).cloned()
            } else {
                None
            };
            out.flags.push(FlagItem { name, value, group });
            continue;
        }
        for (k, t) in body.iter().enumerate() {
            let GTok::Lit(c) = t else {
                return Err(format!("a wildcard in the option {:?}", render(w)));
            };
            let name = canonical_flag(program, &format!("-{c}"));
            if takes_value(program, &name) {
                let attached = body[k + 1..].to_vec();
                let value = if attached.is_empty() {
                    i += 1;
                    words.get(i - 1).cloned()
                } else {
                    Some(attached)
                };
                out.flags.push(FlagItem { name, value, group });
                break;
            }
            out.flags.push(FlagItem {
                name,
                value: None,
                group,
            });
        }
    }
    Ok(out)
}

/// An argv pattern of a manifest: `cargo test *`, `rm -r *`, `git push --force *`.
///
/// Text is shell words: the program, then words. Options are parsed, not compared as strings:
/// short clusters split (`-rf` = `-r -f`), well-known synonyms agree (`rm -R` = `rm
/// --recursive` = `rm -r`), and every option of the pattern must be in the command in any
/// order. The other words must match the command's other arguments in order. A trailing `*`
/// allows any further arguments and options; without it the command has exactly the pattern's
/// arguments (options may be reordered among themselves, not moved across other words). Words
/// may hold `*`, `**` and `?` wildcards (`*` and `?` stay within one path segment, and no
/// wildcard matches a `..` segment); quote them to mean the characters. Expression programs
/// (`find`, `test`, `expr`) compare every argument in place when there is no trailing `*`.
#[derive(Debug, Clone)]
pub struct ArgvPattern {
    text: String,
    program: GWord,
    /// The program is matched on the full path (the pattern's program has a `/`).
    full_path: bool,
    /// The pattern's arguments, without a trailing `*`.
    words: Vec<GWord>,
    rest: bool,
}

impl PartialEq for ArgvPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ArgvPattern {}

impl fmt::Display for ArgvPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for ArgvPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for ArgvPattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for ArgvPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("bad command pattern {pattern:?}: {why}")]
    Bad { pattern: String, why: String },
}

/// Does a command argument look like its value is not known (in a dynamic command)?
fn looks_dynamic(arg: &str) -> bool {
    arg.contains(['$', '`', '*', '?', '[', '{'])
}

impl ArgvPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let bad = |why: &str| PatternError::Bad {
            pattern: text.into(),
            why: why.into(),
        };
        let mut words = pattern_words(text).map_err(|why| bad(&why))?;
        if words.is_empty() {
            return Err(bad("matches every command (it is empty)"));
        }
        let program = words.remove(0);
        if program.iter().all(|t| !matches!(t, GTok::Lit(_))) {
            return Err(bad("matches every program"));
        }
        let program_text = render(&program);
        if program_text.contains(['$', '`']) {
            return Err(bad("a program name cannot hold `$` or backquotes"));
        }
        let rest = words
            .last()
            .is_some_and(|w| *w == [GTok::Star] || *w == [GTok::DStar]);
        if rest {
            words.pop();
        }
        analyze(base_name(&program_text), &words, !rest).map_err(|why| bad(&why))?;
        Ok(Self {
            text: text.into(),
            full_path: program_text.contains('/'),
            program,
            words,
            rest,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The pattern that matches exactly this command's program and arguments.
    pub fn exact(cmd: &SimpleCommand) -> Result<Self, PatternError> {
        let mut text = quote_word(&cmd.program);
        for a in &cmd.args {
            text.push(' ');
            text.push_str(&quote_word(a));
        }
        Self::parse(&text)
    }

    /// The program and its leading subcommand words (at most 2, as in `git push *`, `npm run
    /// build *`), then `*`.
    pub fn prefix(cmd: &SimpleCommand) -> Result<Self, PatternError> {
        let mut text = quote_word(&cmd.program);
        for a in subcommand_words(cmd) {
            text.push(' ');
            text.push_str(&quote_word(a));
        }
        text.push_str(" *");
        Self::parse(&text)
    }

    fn program_matches(&self, cmd: &SimpleCommand) -> bool {
        let name = if self.full_path {
            cmd.program.as_str()
        } else {
            cmd.name()
        };
        glob_match(&self.program, name)
    }

    /// Does this simple command match the pattern? A dynamic command only matches a pattern
    /// ending in `*` whose words all match arguments whose values are known.
    pub fn matches(&self, cmd: &SimpleCommand) -> bool {
        if !self.program_matches(cmd) {
            return false;
        }
        if cmd.dynamic && !self.rest {
            return false;
        }
        let Ok(pat) = analyze(cmd.name(), &self.words, !self.rest) else {
            return false;
        };
        let args: Vec<GWord> = cmd.args.iter().map(|a| literal(a)).collect();
        let Ok(got) = analyze(cmd.name(), &args, !self.rest) else {
            return false;
        };
        let known = |w: &GWord| !cmd.dynamic || !looks_dynamic(&render(w));
        let value_ok = |p: &Option<GWord>, v: &Option<GWord>| match (p, v) {
            (None, _) => true,
            (Some(p), Some(v)) => known(v) && glob_match(p, &render(v)),
            (Some(_), None) => false,
        };
        let flag_ok = |p: &FlagItem, g: &FlagItem, same_group: bool| {
            p.name == g.name && (!same_group || p.group == g.group) && value_ok(&p.value, &g.value)
        };
        if self.rest {
            if got.positionals.len() < pat.positionals.len() {
                return false;
            }
            let words_ok = pat
                .positionals
                .iter()
                .zip(&got.positionals)
                .all(|(p, g)| known(g) && glob_match(p, &render(g)));
            let flags_ok = pat
                .flags
                .iter()
                .all(|p| got.flags.iter().any(|g| flag_ok(p, g, false)));
            return words_ok && flags_ok;
        }
        pat.positionals.len() == got.positionals.len()
            && pat
                .positionals
                .iter()
                .zip(&got.positionals)
                .all(|(p, g)| glob_match(p, &render(g)))
            && pat
                .flags
                .iter()
                .all(|p| got.flags.iter().any(|g| flag_ok(p, g, true)))
            && got
                .flags
                .iter()
                .all(|g| pat.flags.iter().any(|p| flag_ok(p, g, true)))
    }

    /// Could this command match the pattern once its unknown values are known? For deny and
    /// ask rules: a dynamic command may match any pattern of its program (`rm $FLAGS x` may be
    /// `rm -rf x`).
    pub fn may_match(&self, cmd: &SimpleCommand) -> bool {
        if cmd.dynamic {
            self.program_matches(cmd)
        } else {
            self.matches(cmd)
        }
    }
}

/// The leading words of a command that name a subcommand (`test` in `cargo test -p x`, `run
/// build` in `npm run build`): lowercase words before the first option, at most 2.
pub(crate) fn subcommand_words(cmd: &SimpleCommand) -> impl Iterator<Item = &String> {
    cmd.args
        .iter()
        .take_while(|a| {
            let mut chars = a.chars();
            chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == ':'
                })
        })
        .take(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> SimpleCommand {
        let parsed = parse(line).expect("parses");
        assert!(parsed.opaque.is_empty(), "{line}: {:?}", parsed.opaque);
        assert_eq!(parsed.commands.len(), 1, "{line}: {:?}", parsed.commands);
        parsed.commands.into_iter().next().expect("one command")
    }

    #[test]
    fn quoting_removes_quotes_and_keeps_spaces() {
        let c = one(r#"echo 'a b' "c $d" e\ f"#);
        assert_eq!(c.args, vec!["a b", "c $d", "e f"]);
        assert!(c.dynamic);
    }

    #[test]
    fn glob_matcher_keeps_star_inside_a_segment() {
        let w = pattern_words("src/*.rs").expect("words").remove(0);
        assert!(glob_match(&w, "src/a.rs"));
        assert!(!glob_match(&w, "src/a/b.rs"));
        let w = pattern_words("src/**").expect("words").remove(0);
        assert!(glob_match(&w, "src/a/b.rs"));
        assert!(!glob_match(&w, "src/../etc/passwd"));
    }

    #[test]
    fn clusters_split_and_synonyms_agree() {
        let a = analyze("rm", &[literal("-Rf"), literal("x")], true).expect("analyze");
        let names: Vec<_> = a.flags.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["-r", "-f"]);
        let a = analyze("cargo", &[literal("test"), literal("-pfoo")], true).expect("analyze");
        assert_eq!(a.flags[0].value.as_deref().map(render), Some("foo".into()));
    }

    #[test]
    fn interpreters_recognised_with_versions() {
        assert!(is_interpreter("python3.12"));
        assert!(is_interpreter("node"));
        assert!(!is_interpreter("cargo"));
    }
}
