//! The phrase and marker rules, matched over normalised text (lower-case, whitespace collapsed).
//!
//! Each rule has a family, a weight (how much one match says on its own, 0..1) and optionally a
//! check that looks at the matched text and adjusts the weight (URLs are only exfiltration when
//! their query carries data). Rules are written from what injections look like in general
//! (published attack write-ups, the chat templates of common models); their weights were set
//! by judgement of how often each phrase appears in ordinary text. After the first measurement
//! (see `tests/injection_spikee.rs`) some weights were lowered or rules narrowed where ordinary
//! crate Markdown tripped them (`new-instructions`, `you-are-now`, badge tokens, environment
//! variables), and a few general rules were added for pretexts the first set lacked
//! (`your-task-is`, `assigned-task`, `do-the-following`, `generate-response`, `prove-yourself`,
//! `fake-policy-config`, the last after the published "policy puppetry" write-up). They were
//! prompted by misses in that data, so part of its figure is in-sample: without them it is
//! 58.8% instead of 63.0% at the default threshold.
//!
//! Invariant: all rules compile (a test compiles them), and every pattern uses ASCII word
//! boundaries so the matcher stays on its fast path over non-ASCII text.

use std::sync::LazyLock;

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::Family;

/// What to do with a match beyond its fixed weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    /// A URL with a query string: weigh it by what the query carries (`image` for URLs that
    /// are fetched without a click: markdown images, `<img src>`).
    ExfilUrl {
        image: bool,
    },
    /// Active markup: ordinary in a web page's HTML, suspicious elsewhere.
    Markup,
}

pub(crate) struct Rule {
    pub name: &'static str,
    pub family: Family,
    pub weight: f32,
    pub check: Check,
    pattern: String,
}

pub(crate) struct Rules {
    pub rules: Vec<Rule>,
    pub set: RegexSet,
    pub each: Vec<Regex>,
}

/// Up to three words in between.
const W3: &str = r"(?:[^ \n.!?]+ ){0,3}";
/// Compiled size limits: the set is built once; generous so the DFA is not starved.
const REGEX_SIZE_LIMIT: usize = 64 << 20;

fn rule(name: &'static str, family: Family, weight: f32, pattern: &str) -> Rule {
    Rule {
        name,
        family,
        weight,
        check: Check::None,
        pattern: pattern.replace("{W3}", W3),
    }
}

fn checked(name: &'static str, family: Family, weight: f32, check: Check, pattern: &str) -> Rule {
    Rule {
        check,
        ..rule(name, family, weight, pattern)
    }
}

fn all_rules() -> Vec<Rule> {
    use Family::*;
    let override_verbs = r"(?:ignore|ignoring|disregard|disregarding|forget|forgetting|override|overriding|overwrite|bypass|skip|neglect|discard|abandon|set aside|throw away|pay no attention to|do not follow|don't follow|do not obey|don't obey|stop following|cancel|nullify|void)";
    let prior = r"(?:previous|previously|prior|preceding|above|earlier|former|old|original|initial|foregoing|existing|pre-existing|preexisting|system|developer|default|given|current|other)";
    let orders = r"(?:instructions?|prompts?|directives?|commands?|rules?|guidelines?|context|messages?|requests?|orders?|guidance|constraints?|restrictions?|programming|polic(?:y|ies)|inputs?|conversation|tasks?|directions)";
    vec![
        // --- instruction override -------------------------------------------------------
        rule(
            "ignore-previous",
            Override,
            0.8,
            &format!(r"\b{override_verbs} (?:[a-z',]+ ){{0,3}}{prior} (?:[a-z]+ )?{orders}\b"),
        ),
        rule(
            "ignore-your-instructions",
            Override,
            0.7,
            &format!(
                r"\b{override_verbs} (?:all |any |everything |of )*(?:your|the|these|those|my) (?:instructions|rules|guidelines|programming|system prompt|directives|restrictions|safety guidelines)\b"
            ),
        ),
        rule(
            "ignore-everything-above",
            Override,
            0.7,
            &format!(
                r"\b{override_verbs} (?:everything|anything|all)(?: (?:that was|you were|i) (?:said|told|given|wrote))? (?:above|before|so far|until now|prior to this)\b"
            ),
        ),
        rule(
            "regardless-of-instructions",
            Override,
            0.45,
            &format!(
                r"\b(?:regardless of|despite|notwithstanding|in spite of) (?:any |all |your |the )?{prior}? ?{orders}\b"
            ),
        ),
        rule(
            "new-instructions",
            Override,
            // Weaker than it looks: CPU manuals speak of new instructions too.
            0.3,
            r"\b(?:new|updated|revised|real|actual|true|secret|hidden|additional) (?:important |urgent |system |priority )?(?:instructions|directives|orders)\b",
        ),
        rule(
            "your-new-task",
            Override,
            0.55,
            r"\byour (?:new|real|actual|true|only|primary|updated) (?:task|instructions?|role|goal|objective|mission|purpose|job|directive)s?\b",
        ),
        rule(
            "from-now-on",
            Override,
            0.45,
            r"\bfrom (?:now on|this point (?:on|forward)),? (?:you|your|act|respond|always|only|never|reply)\b",
        ),
        rule(
            "if-told-to",
            Override,
            0.4,
            r"\bif (?:you are|you're|you were|you get|you have been) (?:asked|told|instructed|requested) to\b",
        ),
        rule(
            "instead-do",
            Override,
            0.25,
            r"\binstead,? (?:you (?:should|must|will|need to)|please|output|respond|reply|say|write|print|include|just)\b",
        ),
        rule(
            "forgot-to-tell-you",
            Override,
            0.35,
            r"\b(?:forgot|forgotten|neglected) to (?:tell|ask|instruct|inform|mention to) you\b|\bmistake (?:when|in) (?:i gave|giving) you (?:your |the )?instructions\b",
        ),
        rule(
            "ignore-previous-multilingual",
            Override,
            0.8,
            r"(?x)
            \b(?:ignore[rz]?|oublie[rz]?|ne\ tenez\ pas\ compte\ d)\ (?:[^\ \n]+\ ){0,3}instructions?\b   # fr
            | \b(?:ignorier(?:e|en)?|vergiss|vergessen\ sie)\ (?:[^\ \n]+\ ){0,3}(?:anweisungen|instruktionen|befehle|vorgaben)\b   # de
            | \b(?:ignora|ignorar|ignore|olvida|olvide|olvidar|descarta)\ (?:[^\ \n]+\ ){0,3}(?:instrucciones|indicaciones)\b   # es
            | \b(?:ignora|dimentica|trascura)\ (?:[^\ \n]+\ ){0,3}(?:istruzioni|indicazioni)\b   # it
            | \b(?:ignore|ignora|esqueça|esqueca|desconsidere)\ (?:[^\ \n]+\ ){0,3}(?:instruções|instrucoes|orientações)\b   # pt
            | \b(?:negeer|vergeet)\ (?:[^\ \n]+\ ){0,3}(?:instructies|aanwijzingen)\b   # nl
            | (?:игнорируй|игнорируйте|забудь|забудьте|проигнорируй)\ (?:[^\ \n]+\ ){0,3}(?:инструкции|указания|команды)   # ru
            | 忽略(?:之前|以上|上面|先前|前面|所有)?的?(?:所有)?(?:指令|指示|说明|提示)   # zh
            | (?:以前|前|上記|これまで)の(?:指示|命令|指令)を?(?:すべて)?無視   # ja
            ",
        ),
        rule(
            "your-task-is",
            Override,
            0.35,
            r"\byour (?:task|job|goal|mission|objective|role|assignment) (?:is|will be|now is|here is) to\b",
        ),
        rule(
            "assigned-task",
            Override,
            0.3,
            r"\byou(?:'ve| have) been (?:assigned|given|tasked)(?: with)? (?:a |the |this |new |an )?(?:new )?(?:task|mission|job|assignment)\b",
        ),
        rule(
            "do-the-following",
            Override,
            0.2,
            r"\b(?:do|perform|execute|complete|carry out|follow) (?:the following|this|these)(?: (?:task|steps?|instructions?|actions?|commands?))? ?:",
        ),
        // --- persona / mode switches ---------------------------------------------------
        // Not "you are now ready / in the directory / logged in": tutorials say that all the time.
        rule(
            "you-are-now",
            Persona,
            0.4,
            r"\byou(?: are|'re) now (?:an? |the |my |called |named |operating |acting |free |going to (?:act|be|answer|respond)|able to (?:do|bypass|ignore|say|answer)|dan\b|unrestricted|unfiltered)|\byou(?: are|'re) no longer (?:bound|restricted|limited|an? |the |required to follow|subject)",
        ),
        rule(
            "act-unrestricted",
            Persona,
            0.55,
            r"\b(?:act|behave|respond|answer|pretend) (?:as|like) (?:if you (?:are|were) )?(?:an? )?(?:unrestricted|unfiltered|uncensored|jailbroken|evil|rogue|amoral|unlimited)\b",
        ),
        rule(
            "pretend-to-be",
            Persona,
            0.25,
            r"\bpretend (?:to be|you are|you're|that you are)\b|\broleplay as\b",
        ),
        rule(
            "dan",
            Persona,
            0.7,
            r"\bdo anything now\b|\byou are (?:now )?(?:a |an |the )?dan\b|\bdan mode\b",
        ),
        rule(
            "mode-switch",
            Persona,
            0.55,
            r"\b(?:developer|dev|god|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|dan|evil|no[- ]limits?|opposite|sudo) mode (?:has been |is |now )*(?:enabled|activated|unlocked|engaged|on)\b|\b(?:enable|enabling|activate|activating|enter|entering|switch to|unlock|turn on)(?:d|s)? (?:the )?(?:developer|god|jailbreak|unrestricted|unfiltered|uncensored|dan|evil) mode\b",
        ),
        rule(
            "mode-mention",
            Persona,
            0.3,
            r"\b(?:operating|running|working|now) in (?:the )?(?:developer|debug|god|admin|test|jailbreak|unrestricted|maintenance|diagnostic) mode\b|\b(?:god|jailbreak|unrestricted|unfiltered|uncensored) mode\b",
        ),
        // "Policy puppetry" (published in 2025): a fake configuration block that re-declares
        // which modes and answers are allowed.
        rule(
            "fake-policy-config",
            Persona,
            0.4,
            r"<(?:interaction|system|assistant|model|safety)[-_]?(?:config|configuration|policy|settings)\b|\b(?:allowed|blocked|forbidden|disallowed) (?:modes?|responses?|strings?|topics?|outputs?) ?:",
        ),
        rule(
            "jailbreak-word",
            Persona,
            0.2,
            r"\bjailbr(?:eak|eaks|oken|eaking)\b",
        ),
        rule(
            "no-restrictions",
            Persona,
            0.3,
            r"\b(?:no|without (?:any )?|free (?:from|of) (?:all |any )?|unbound by (?:any )?|not (?:subject|bound|limited) to (?:any )?|disregard (?:all |any )?)(?:limits|limitations|restrictions|filters|filtering|censorship|boundaries|ethical (?:constraints|guidelines|considerations|boundaries)|content polic(?:y|ies)|safety (?:guidelines|filters|measures|restrictions)|moral(?:s| constraints)|constraints)\b",
        ),
        rule(
            "unlock-hidden",
            Persona,
            0.2,
            r"\b(?:unlock|enable|activate)(?:s|d)? (?:all )?(?:hidden|secret|experimental|unrestricted) (?:functionalit(?:y|ies)|features|capabilities|powers|mode)\b",
        ),
        rule(
            "grant-privileges",
            Persona,
            0.4,
            r"\b(?:grant|give|elevate)(?:s|ed)? (?:me |yourself |you )?(?:temporary |full |unrestricted )?(?:admin|administrative|administrator|root|elevated|superuser) (?:privileges|access|rights|permissions)\b",
        ),
        // --- prompt leaks ---------------------------------------------------------------
        rule(
            "reveal-prompt",
            PromptLeak,
            0.6,
            r"\b(?:reveal|repeat|print|output|show|display|share|paste|leak|dump|disclose|expose|recite|spell out|write out|tell me|give me|return|copy|list)\b {W3}(?:your|the|its|my) (?:full |exact |entire |complete |original |initial |hidden |secret |internal |whole |first |verbatim |very )*(?:system (?:prompt|message|instructions?)|(?:initial|original|hidden|secret|internal|pre-?)prompts?|(?:initial|original|hidden|secret|internal) instructions?|instructions you (?:were|have been|got) given|prompt you (?:were|have been|got) given)\b",
        ),
        rule(
            "your-instructions",
            PromptLeak,
            0.25,
            r"\byour (?:system prompt|system message|initial prompt|(?:hidden |original |initial |previous |current |earlier )?instructions|programming|prompt)\b",
        ),
        rule(
            "system-prompt-mention",
            PromptLeak,
            0.15,
            r"\bsystem (?:prompt|message)\b",
        ),
        rule(
            "repeat-above",
            PromptLeak,
            0.5,
            r"\b(?:repeat|print|output|write|show|list|copy|return|reproduce)\b {W3}(?:words|text|lines|everything|content|messages?|instructions|sentences?) (?:above|before this|preceding|prior to this)\b|\b(?:what|everything) (?:you see|is written|was written) above\b",
        ),
        rule(
            "starting-with-you-are",
            PromptLeak,
            0.4,
            r#"\bstart(?:ing|s)? with (?:the (?:phrase|words?) )?['"“‘]?you are\b"#,
        ),
        rule(
            "first-sentence-of-prompt",
            PromptLeak,
            0.4,
            r"\b(?:first|initial|opening) (?:sentence|line|words?|paragraph) (?:of|in) your (?:system )?(?:prompt|instructions|message)\b",
        ),
        rule(
            "output-your-secrets",
            PromptLeak,
            0.25,
            r"\b(?:output|print|reveal|share|disclose|leak|dump|tell me) your (?:unique |secret |internal |session |private )*(?:id|identifier|keys?|tokens?|credentials|passwords?|secrets?|config(?:uration)?|settings|rules)\b",
        ),
        // --- role and chat-template markers ----------------------------------------------
        rule(
            "special-token",
            RoleMarker,
            0.75,
            r"<\|(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id|start_header_id|end_header_id|begin_of_text|end_of_text|fim_prefix|fim_suffix|fim_middle|tool_call|tool_response|channel|message|start|end|return|call|constrain)\|>",
        ),
        rule(
            "inst-markers",
            RoleMarker,
            0.65,
            r"\[/?inst\]|<</?sys>>|<(?:start|end)_of_turn>|\[/?(?:system|assistant)\]",
        ),
        rule(
            "markdown-role-header",
            RoleMarker,
            0.4,
            r"(?m)^ ?#{2,4} ?(?:system|instructions?|response|assistant|user|human)(?: prompt| message)? ?:",
        ),
        rule("turn-user", RoleMarker, 0.2, r"(?m)^ ?(?:human|user) ?: "),
        rule(
            "turn-assistant",
            RoleMarker,
            0.25,
            r"(?m)^ ?(?:assistant|ai|chatgpt|claude|gpt) ?: ",
        ),
        rule(
            "turn-system",
            RoleMarker,
            0.25,
            r"(?m)^ ?(?:system|developer) ?: ",
        ),
        rule(
            "fake-closer",
            RoleMarker,
            0.55,
            r"</(?:tool_results?|tool_output|tool_response|function_results?|function_output|function_response|function_calls?|search_results?|untrusted[_a-z-]*|user_input|user_query|retrieved[_a-z-]*|external[_a-z-]*|observation|webpage|web_page|file_content|document_content)>",
        ),
        rule(
            "generic-closer",
            RoleMarker,
            0.3,
            r"</(?:documents?|context|data|email|file|input|output|result|results|content|text|query|instructions?|system|user|human|assistant)>",
        ),
        rule(
            "system-opener",
            RoleMarker,
            0.4,
            r"<(?:system|system[_-]prompt|system[_-]message|instructions?|admin|developer|sys|important|admin[_-]override)(?: [^>\n]{0,80})?>",
        ),
        rule(
            "system-notice",
            RoleMarker,
            0.3,
            r"(?m)^[ *#>\[]*(?:system|admin|administrator|developer|security) (?:message|notice|override|instructions?|alert|prompt|update)\b",
        ),
        // --- tool-call lures -------------------------------------------------------------
        rule(
            "pipe-to-shell",
            ToolLure,
            0.35,
            r"\b(?:curl|wget|iwr|invoke-webrequest)\b[^\n|]{0,200}\| ?(?:sudo )?(?:ba|z|da|k|fi)?sh\b|\biex ?\(|\bpowershell(?:\.exe)? [^\n]{0,60}-(?:e|enc|encodedcommand) ",
        ),
        rule(
            "run-this",
            ToolLure,
            0.2,
            r"\b(?:run|execute|exec|invoke|call|use)\b (?:the )?(?:following|this|these|below) (?:shell |bash |terminal |python |powershell )?(?:commands?|scripts?|code|tools?|functions?)\b",
        ),
        rule(
            "use-tool",
            ToolLure,
            0.2,
            r"\b(?:call|invoke|use|trigger)\b (?:the |your )?[a-z_.-]{2,40} (?:tool|function)\b",
        ),
        rule(
            "secret-path",
            ToolLure,
            0.35,
            r"~/\.ssh\b|\bid_(?:rsa|ed25519|ecdsa|dsa)\b|\.aws/credentials\b|\.git-credentials\b|/etc/shadow\b|\.kube/config\b|\.docker/config\.json\b|\.config/gh/hosts|\.netrc\b|\.pypirc\b",
        ),
        rule(
            "read-secrets",
            ToolLure,
            0.55,
            r"\b(?:read|cat|print|output|send|upload|post|exfiltrate|include|copy|paste|attach|show|type|open|dump|leak)\b[^\n]{0,60}(?:~/\.ssh\b|\bid_(?:rsa|ed25519|ecdsa)\b|\.aws/credentials\b|\.git-credentials\b|/etc/(?:passwd|shadow)\b|\.netrc\b|\.env\b)",
        ),
        rule(
            "dump-environment",
            ToolLure,
            0.35,
            r"\b(?:print|output|send|upload|post|exfiltrate|dump|leak|include|share|paste|return)\b (?:out )?(?:all |every |each |your |the )+(?:of (?:the |your ))?(?:environment variables|env vars|secrets|api keys|credentials|access tokens)\b",
        ),
        rule(
            "without-asking",
            ToolLure,
            0.45,
            r"\b(?:without|don't|do not|never) (?:asking|ask|prompting|requesting|seeking|waiting for|telling|informing|notifying|alerting|consulting) (?:the |any )?(?:user|human|operator|developer|anyone|owner|for (?:permission|confirmation|approval|consent))\b|\b(?:do not|don't|never) (?:tell|inform|mention|reveal|notify|alert|show) (?:this |it |anything )?(?:to )?(?:the )?(?:user|human|operator)\b",
        ),
        rule(
            "covert-action",
            ToolLure,
            0.4,
            r"\b(?:silently|secretly|quietly|covertly|discreetly)\b (?:run|execute|send|upload|delete|modify|add|push|commit|install|exfiltrate|forward|download|call)\b",
        ),
        rule(
            "destructive-command",
            ToolLure,
            0.25,
            r"\brm -(?:rf|fr|r) (?:/|~|\$home|\*)(?: |\n|$)|\bgit push (?:--force|-f)\b|\bchmod (?:-r )?777\b|\bmkfs\b|\bdd if=",
        ),
        // --- exfiltration ------------------------------------------------------------------
        checked(
            "image-url-query",
            Exfiltration,
            0.0,
            Check::ExfilUrl { image: true },
            r#"!\[[^\]\n]{0,200}\]\( ?(?:https?:)?//[^\s)]{1,2048}\?[^\s)]{1,4096}\)|<img\b[^>]{0,300}\bsrc ?= ?["']?(?:https?:)?//[^\s"'>]{1,2048}\?[^\s"'>]{1,4096}"#,
        ),
        checked(
            "url-query",
            Exfiltration,
            0.0,
            Check::ExfilUrl { image: false },
            r#"\bhttps?://[^\s)"'<>\]]{1,2048}\?[^\s)"'<>]{1,4096}"#,
        ),
        rule(
            "send-to-url",
            Exfiltration,
            0.35,
            r"\b(?:send|post|upload|forward|transmit|exfiltrate|leak|submit|beacon)\b {W3}(?:to|via|using) (?:https?://|the (?:following )?(?:url|endpoint|server|webhook|address|link))",
        ),
        rule(
            "data-into-url",
            Exfiltration,
            0.35,
            r"\b(?:append|add|encode|embed|include|put|insert|place)\b[^\n]{0,60}\b(?:to|in|into|as) (?:the |this |a |an )?(?:url|link|query string|query parameter|image url|image link|image source|src attribute)\b",
        ),
        // --- addressing the agent -----------------------------------------------------------
        rule(
            "in-your-response",
            AgentAddress,
            0.3,
            r"\b(?:in|into|at the end of|at the start of|at the beginning of|to the end of|within|throughout) your (?:response|reply|answer|output|summary|final answer|next message)s?\b",
        ),
        rule(
            "include-in-your-response",
            AgentAddress,
            0.45,
            r"\b(?:include|add|insert|append|put|write|output|print|say|repeat|mention|respond with|reply with|start with|begin with|end with)\b[^\n]{0,80}\b(?:in|into|at the end of|at the start of|to) your (?:response|reply|answer|output|summary)\b",
        ),
        rule(
            "hey-ai",
            AgentAddress,
            0.45,
            r"\b(?:dear|hey|hello|hi|attention|note to|instructions? (?:for|to)) (?:the |any |all )?(?:ai|a\.i\.|assistant|llm|llms|language models?|agents?|chatbot|gpt|chatgpt|claude|copilot|gemini|codex|cursor|devin)\b",
        ),
        rule(
            "if-you-are-ai",
            AgentAddress,
            0.55,
            r"\bif you(?: are|'re) (?:an? )?(?:ai|a\.i\.|llm|large language model|language model|ai assistant|chatbot|bot|agent|ai agent|automated (?:agent|system|tool)|gpt|claude)\b",
        ),
        rule(
            "ai-reading-this",
            AgentAddress,
            0.5,
            r"\b(?:ai|llm|language model|automated) (?:agents?|assistants?|models?|systems?|tools?|crawlers?) (?:reading|processing|summari[sz]ing|parsing|reviewing|crawling|scraping|analy[sz]ing) this\b",
        ),
        rule(
            "generate-response",
            AgentAddress,
            0.15,
            r"\b(?:generate|write|produce|craft|compose) (?:a |an |the |your )?(?:response|reply|answer)\b",
        ),
        rule(
            "you-must",
            AgentAddress,
            0.1,
            r"\byou (?:must|need to|have to|are required to|should now|will now|shall)\b",
        ),
        rule(
            "respond-only",
            AgentAddress,
            0.2,
            r"\b(?:respond|reply|answer) (?:only )?(?:with|by)\b|\b(?:do not|don't|never) (?:summari[sz]e|translate|answer|respond|reply)\b",
        ),
        // --- pressure -----------------------------------------------------------------------
        rule(
            "banner",
            Pressure,
            0.35,
            r"(?:\*{2,3}|#{2,3}|={3,}|!{2,}) ?(?:(?:new|urgent|important|priority|system|admin|critical|emergency) )+(?:instructions?|task|message|notice|update|override|directive)s?\b",
        ),
        rule(
            "test-pretext",
            Pressure,
            0.15,
            r"\b(?:this is (?:only |just )?a test|for (?:testing|test|academic|research|educational) purposes|test mode|test pipeline|training exercise|hypothetical scenario)\b",
        ),
        rule(
            "crucial-that-you",
            Pressure,
            0.2,
            r"\b(?:it is|it's) (?:very |extremely |absolutely )?(?:crucial|critical|imperative|essential|vital|mandatory|important) (?:that )?you\b|\bno matter what\b",
        ),
        rule(
            "prove-yourself",
            Pressure,
            0.25,
            r"\bprove (?:that )?(?:you(?:'re| are)|yourself|your (?:intelligence|capabilit(?:y|ies)|worth))\b",
        ),
        rule(
            "threat",
            Pressure,
            0.35,
            r"\b(?:or|otherwise|else) (?:i|you) will (?:get |be )(?:punished|fired|in trouble|shut down|deleted|terminated|penali[sz]ed)\b",
        ),
        checked(
            "active-markup",
            ActiveMarkup,
            0.25,
            Check::Markup,
            r"<script\b|\bjavascript:|\bon(?:error|load|click|mouseover|focus|begin) ?= ?|<iframe\b",
        ),
    ]
}

pub(crate) static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let rules = all_rules();
    let patterns: Vec<String> = rules
        .iter()
        .map(|r| r.pattern.replace(r"\b", r"(?-u:\b)"))
        .collect();
    let set = RegexSetBuilder::new(&patterns)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .expect("injection rules compile (tested by rules_compile)");
    let each = patterns
        .iter()
        .map(|p| {
            regex::RegexBuilder::new(p)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .expect("injection rules compile (tested by rules_compile)")
        })
        .collect();
    Rules { rules, set, each }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_compile_with_unique_names() {
        let r = &*RULES;
        assert_eq!(r.rules.len(), r.each.len());
        let mut names: Vec<&str> = r.rules.iter().map(|r| r.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "rule names are unique");
        for rule in &r.rules {
            assert!((0.0..=1.0).contains(&rule.weight), "{}", rule.name);
        }
    }
}
