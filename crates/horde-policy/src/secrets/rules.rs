//! The shipped rule set: one entry per kind of secret, with the keywords that must occur near
//! it (the prefilter), the regex that finds it, the capture group that is the secret itself, a
//! minimum Shannon entropy, and the extra check that rejects placeholders.
//!
//! Regexes use ASCII classes and ASCII word boundaries (`(?-u:\b)`) where the format is ASCII:
//! Unicode `\b` and `\w` make the regex engine slower to build and to run.
//!
//! Invariants: every rule has at least one keyword, every keyword is lowercase ASCII (the
//! prefilter matches ASCII-case-insensitively), every regex compiles and has the capture group
//! the rule names. Specific rules come before the generic ones: when two findings overlap, the
//! rule listed first wins.
//!
//! ## Licence of the adapted rules
//!
//! Several regexes and keyword lists below are adapted from the default configuration of
//! gitleaks (<https://github.com/gitleaks/gitleaks>, `config/gitleaks.toml` at commit b58d3f1),
//! which carries this notice:
//!
//! > MIT License
//! >
//! > Copyright (c) 2019 Zachary Rice
//! >
//! > Permission is hereby granted, free of charge, to any person obtaining a copy of this
//! > software and associated documentation files (the "Software"), to deal in the Software
//! > without restriction, including without limitation the rights to use, copy, modify, merge,
//! > publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
//! > to whom the Software is furnished to do so, subject to the following conditions:
//! >
//! > The above copyright notice and this permission notice shall be included in all copies or
//! > substantial portions of the Software.
//! >
//! > THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
//! > INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
//! > PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
//! > FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
//! > OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
//! > DEALINGS IN THE SOFTWARE.
//!
//! Adapted from gitleaks (regex and keywords, sometimes tightened): `aws-access-key-id`
//! (gitleaks `aws-access-token`), `github-pat`, `github-oauth`, `github-app-token`,
//! `github-refresh-token`, `github-fine-grained-pat`, `gitlab-pat-routable`, `gitlab-pat`,
//! `gitlab-ptt`, `gitlab-rrt`, `gitlab-deploy-token`, `gitlab-runner-token` (gitleaks
//! `gitlab-runner-authentication-token`), `slack-bot-token`, `slack-user-token`,
//! `slack-app-token`, `slack-webhook-url`, `stripe-access-token`, `gcp-api-key`,
//! `openai-api-key`, `anthropic-api-key`, `anthropic-admin-api-key`,
//! `huggingface-access-token`, `huggingface-org-token` (gitleaks
//! `huggingface-organization-api-token`), `private-key` (shorter minimum body), `jwt`
//! (anchored on `eyJ`, the base64 of `{"`, instead of `ey`). Written for horde:
//! `aws-secret-access-key`, `google-oauth-client-secret`, `database-url`, `url-password`,
//! `generic-password`, `generic-secret` (the keyword/assignment idea is gitleaks'
//! `generic-api-key`, the regex and the filters are ours).

use super::Family;

/// Where a rule's regex runs around a keyword hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    /// The line holding the hit (capped at [`super::MAX_LINE_REGION`] bytes each side).
    Line,
    /// From the start of the hit's line to this many bytes after it (multi-line secrets).
    Block(usize),
}

/// Extra validation of a candidate, after the regex and the entropy threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    /// Documented example keys (AWS's `…EXAMPLE`) are not secrets.
    NotExample,
    /// `scheme://user:password@host`: the password must not be a placeholder nor the user name.
    UrlPassword,
    /// A JWT that is not jwt.io's documented sample.
    Jwt,
    /// `name = value`: the name must not describe a non-secret (`token_type`, `secret_hash`),
    /// the value must look like a literal secret (has a digit, is not an identifier path, not
    /// a placeholder, not all digits).
    Assignment,
}

pub(crate) struct RuleSpec {
    pub id: &'static str,
    pub family: Family,
    pub keywords: &'static [&'static str],
    pub regex: &'static str,
    /// Capture group holding the secret; for `Check::UrlPassword` group 1 is the user name and
    /// for `Check::Assignment` group 1 is the name assigned to.
    pub secret_group: usize,
    pub min_entropy: f64,
    pub region: Region,
    pub check: Check,
}

/// What may follow a token that ends at a word boundary of its own format (gitleaks' idiom).
macro_rules! end {
    () => {
        r#"(?:[`'"\s;,)\]}>]|\\[nrt]|$)"#
    };
}

/// The name part of an assignment and its operator, for the generic rules.
macro_rules! assign {
    ($kw:expr) => {
        concat!(
            r#"(?i)([0-9A-Za-z_.-]{0,40}?"#,
            $kw,
            r#"[0-9A-Za-z_.-]{0,30})["'\]]{0,2}(?:[ \t]{0,3}:[ \t]{0,3}&(?:'static[ \t]{1,3})?str|[ \t]{0,3}:[ \t]{0,3}String)?[ \t]{0,3}(?:=|:=|:|=>|\?=|\|\|=)[ \t]{0,3}(?:!!binary[ \t]{1,3})?(?:[bru]?[`'"])?([A-Za-z0-9_.+/=~@#%^*!$&?-]{8,150})"#,
            end!()
        )
    };
}

pub(crate) const RULES: &[RuleSpec] = &[
    RuleSpec {
        id: "aws-access-key-id",
        family: Family::Aws,
        keywords: &["akia", "asia", "abia", "acca", "a3t"],
        regex: r"(?-u:\b)((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::NotExample,
    },
    RuleSpec {
        id: "aws-secret-access-key",
        family: Family::Aws,
        keywords: &[
            "secret_access_key",
            "secret-access-key",
            "secretaccesskey",
            "aws_secret",
            "aws-secret",
            "awssecret",
        ],
        regex: concat!(
            r#"(?i)(?:secret[_-]?access[_-]?key|aws[_-]?secret[_-]?(?:access[_-]?)?key)["'\]]{0,2}[ \t]{0,3}(?:=|:=|:|=>)[ \t]{0,3}[`'"]?([A-Za-z0-9/+]{40})"#,
            r#"(?:[^A-Za-z0-9/+=]|$)"#
        ),
        secret_group: 1,
        min_entropy: 4.0,
        region: Region::Line,
        check: Check::NotExample,
    },
    RuleSpec {
        id: "github-pat",
        family: Family::GitHub,
        keywords: &["ghp_"],
        regex: r"(?-u:\b)(ghp_[0-9a-zA-Z]{36})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "github-oauth",
        family: Family::GitHub,
        keywords: &["gho_"],
        regex: r"(?-u:\b)(gho_[0-9a-zA-Z]{36})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "github-app-token",
        family: Family::GitHub,
        keywords: &["ghu_", "ghs_"],
        regex: r"(?-u:\b)((?:ghu|ghs)_[0-9a-zA-Z]{36})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "github-refresh-token",
        family: Family::GitHub,
        keywords: &["ghr_"],
        regex: r"(?-u:\b)(ghr_[0-9a-zA-Z]{36})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "github-fine-grained-pat",
        family: Family::GitHub,
        keywords: &["github_pat_"],
        regex: r"(?-u:\b)(github_pat_[0-9A-Za-z_]{82})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gitlab-pat-routable",
        family: Family::GitLab,
        keywords: &["glpat-"],
        regex: r"(?-u:\b)(glpat-[0-9a-zA-Z_-]{27,300}\.[0-9a-z]{2}[0-9a-z]{7})(?-u:\b)",
        secret_group: 1,
        min_entropy: 4.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gitlab-pat",
        family: Family::GitLab,
        keywords: &["glpat-"],
        regex: r"(?-u:\b)(glpat-[0-9A-Za-z_-]{20})(?:[^\w-]|$)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gitlab-ptt",
        family: Family::GitLab,
        keywords: &["glptt-"],
        regex: r"(?-u:\b)(glptt-[0-9a-f]{40})(?-u:\b)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gitlab-rrt",
        family: Family::GitLab,
        keywords: &["gr1348941"],
        regex: r"(?-u:\b)(GR1348941[0-9A-Za-z_-]{20})(?:[^\w-]|$)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gitlab-deploy-token",
        family: Family::GitLab,
        keywords: &["gldt-"],
        regex: r"(?-u:\b)(gldt-[0-9a-zA-Z_-]{20})(?:[^\w-]|$)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gitlab-runner-token",
        family: Family::GitLab,
        keywords: &["glrt-"],
        regex: r"(?-u:\b)(glrt-[0-9a-zA-Z_-]{20})(?:[^\w-]|$)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "slack-bot-token",
        family: Family::Slack,
        keywords: &["xoxb-"],
        regex: r"(?-u:\b)(xoxb-[0-9]{10,13}-[0-9]{10,13}[a-zA-Z0-9-]*)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "slack-user-token",
        family: Family::Slack,
        keywords: &["xoxp-", "xoxe-"],
        regex: r"(?-u:\b)(xox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34})",
        secret_group: 1,
        min_entropy: 2.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "slack-app-token",
        family: Family::Slack,
        keywords: &["xapp-"],
        regex: r"(?i)(?-u:\b)(xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+)",
        secret_group: 1,
        min_entropy: 2.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "slack-webhook-url",
        family: Family::Slack,
        keywords: &["hooks.slack.com"],
        regex: r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9+/]{43,56})",
        secret_group: 1,
        min_entropy: 0.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "stripe-access-token",
        family: Family::Stripe,
        keywords: &[
            "sk_test_", "sk_live_", "sk_prod_", "rk_test_", "rk_live_", "rk_prod_",
        ],
        regex: concat!(
            r"(?-u:\b)((?:sk|rk)_(?:test|live|prod)_[a-zA-Z0-9]{10,99})",
            end!()
        ),
        secret_group: 1,
        min_entropy: 2.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "gcp-api-key",
        family: Family::Google,
        keywords: &["aiza"],
        regex: concat!(r"(?-u:\b)(AIza[0-9A-Za-z_-]{35})", end!()),
        secret_group: 1,
        min_entropy: 4.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "google-oauth-client-secret",
        family: Family::Google,
        keywords: &["gocspx-"],
        regex: r"(?-u:\b)(GOCSPX-[A-Za-z0-9_-]{28})(?:[^\w-]|$)",
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "openai-api-key",
        family: Family::OpenAi,
        keywords: &["t3blbkfj"],
        regex: concat!(
            r"(?-u:\b)(sk-(?:proj|svcacct|admin)-(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})T3BlbkFJ(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})|sk-[a-zA-Z0-9]{20}T3BlbkFJ[a-zA-Z0-9]{20})",
            end!()
        ),
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "anthropic-api-key",
        family: Family::Anthropic,
        keywords: &["sk-ant-api03-"],
        regex: concat!(r"(?-u:\b)(sk-ant-api03-[a-zA-Z0-9_-]{93}AA)", end!()),
        secret_group: 1,
        min_entropy: 0.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "anthropic-admin-api-key",
        family: Family::Anthropic,
        keywords: &["sk-ant-admin01-"],
        regex: concat!(r"(?-u:\b)(sk-ant-admin01-[a-zA-Z0-9_-]{93}AA)", end!()),
        secret_group: 1,
        min_entropy: 0.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "huggingface-access-token",
        family: Family::HuggingFace,
        keywords: &["hf_"],
        regex: concat!(r"(?-u:\b)(hf_(?i:[a-z]{34}))", end!()),
        secret_group: 1,
        min_entropy: 2.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "huggingface-org-token",
        family: Family::HuggingFace,
        keywords: &["api_org_"],
        regex: concat!(r"(?-u:\b)(api_org_(?i:[a-z]{34}))", end!()),
        secret_group: 1,
        min_entropy: 2.0,
        region: Region::Line,
        check: Check::None,
    },
    RuleSpec {
        id: "private-key",
        family: Family::PrivateKey,
        keywords: &["-----begin"],
        regex: r"(?i)(-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S]{32,}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----)",
        secret_group: 1,
        min_entropy: 0.0,
        region: Region::Block(super::MAX_PEM_BYTES),
        check: Check::None,
    },
    RuleSpec {
        id: "jwt",
        family: Family::Jwt,
        keywords: &["eyj"],
        regex: concat!(
            r"(?-u:\b)(eyJ[A-Za-z0-9_-]{15,}={0,2}\.eyJ[A-Za-z0-9_-]{15,}={0,2}\.(?:[A-Za-z0-9_-]{10,}={0,2})?)",
            end!()
        ),
        secret_group: 1,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::Jwt,
    },
    RuleSpec {
        id: "database-url",
        family: Family::DatabaseUrl,
        keywords: &[
            "postgres",
            "mysql",
            "mariadb",
            "mongodb",
            "redis",
            "amqp",
            "mssql",
            "sqlserver",
            "clickhouse",
            "cockroachdb",
            "couchdb",
            "neo4j",
            "oracle",
        ],
        regex: r#"(?i)(?-u:\b)(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse|cockroachdb|couchdb|neo4j|oracle)(?:\+[a-z0-9]+)?://([^\s:/@'"`]{0,128}):([^\s@/'"`]{1,256})@[^\s/'"`@]"#,
        secret_group: 2,
        min_entropy: 0.0,
        region: Region::Line,
        check: Check::UrlPassword,
    },
    RuleSpec {
        id: "url-password",
        family: Family::Generic,
        keywords: &["://"],
        regex: r#"(?i)(?-u:\b)[a-z][a-z0-9+.-]{1,20}://([^\s:/@'"`<>]{1,128}):([^\s@/'"`<>]{3,256})@[a-z0-9\[]"#,
        secret_group: 2,
        min_entropy: 0.0,
        region: Region::Line,
        check: Check::UrlPassword,
    },
    RuleSpec {
        id: "generic-password",
        family: Family::Generic,
        keywords: &["passw", "pwd", "passphrase"],
        regex: assign!(r"(?:passw(?:or)?d|pwd|passphrase)"),
        secret_group: 2,
        min_entropy: 3.0,
        region: Region::Line,
        check: Check::Assignment,
    },
    RuleSpec {
        id: "generic-secret",
        family: Family::Generic,
        keywords: &[
            "secret",
            "token",
            "api_key",
            "apikey",
            "api-key",
            "access_key",
            "accesskey",
            "access-key",
            "private_key",
            "privatekey",
            "credential",
            "auth_key",
        ],
        regex: assign!(
            r"(?:secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|auth[_-]?key)"
        ),
        secret_group: 2,
        min_entropy: 3.5,
        region: Region::Line,
        check: Check::Assignment,
    },
];
