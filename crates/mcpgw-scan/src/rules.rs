//! The rule table: every rule's id, severity, summary and matcher, as data.
//!
//! Text patterns are compiled once, all together into one `RegexSet` that
//! says which rules match a string, and one by one (the first time one
//! matches) for where. The table
//! holds no logic beyond choosing a matcher; cross-item matchers live in
//! `inventory.rs`, character checks in `unicode.rs`. Patterns are
//! case-insensitive and written in verbose mode (`x`): whitespace in them
//! is layout, `\s` is a space; `\b` is an ASCII word boundary, and word
//! and digit classes are spelled out in ASCII (`[0-9a-z_]`): the words the
//! rules look for are ASCII, and Unicode's classes cost compile time. Where a
//! pattern spans words within one sentence, `(?:[^.\n]|\.\S)` is a
//! character of that sentence: a dot inside `~/.ssh` does not end it.

use std::sync::{LazyLock, OnceLock};

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::finding::{Hit, Severity};
use crate::item::ItemKind;
use crate::unicode;
use crate::walk::Field;

/// One rule of the scanner.
#[derive(Debug)]
pub struct Rule {
    /// Stable id, used in findings, SARIF and suppressions.
    pub id: &'static str,
    /// How bad a match is.
    pub severity: Severity,
    /// What the rule catches, in one line.
    pub summary: &'static str,
    /// Whether it also reads tool results.
    pub reads: Reads,
    pub(crate) check: Check,
}

/// Which items a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Definitions only (tools, prompts, resources, templates).
    Definitions,
    /// Definitions and tool results: the injection rules.
    DefinitionsAndResults,
}

/// What a rule looks at and how.
#[derive(Debug)]
pub(crate) enum Check {
    /// Runs on every string the walk finds in the given fields.
    Text(Fields, TextCheck),
    /// Runs once on the item's name, against the inventory.
    Name(NameCheck),
}

/// Which strings a text check reads, by the field they sit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fields {
    /// Every string, locators included.
    All,
    /// Prose and samples: everything but locators such as `$ref` or `uri`.
    Readable,
    Prose,
    Samples,
}

impl Fields {
    pub(crate) fn contains(self, field: Field) -> bool {
        match self {
            Fields::All => true,
            Fields::Readable => field != Field::Locator,
            Fields::Prose => field == Field::Prose,
            Fields::Samples => field == Field::Sample,
        }
    }
}

#[derive(Debug)]
pub(crate) enum TextCheck {
    /// A regular expression (case-insensitive, verbose).
    Pattern(&'static str),
    /// A character-level check. It must find nothing in plain ASCII
    /// (printable, tab, line breaks), which the scan does not give it.
    Chars(fn(&str) -> Option<Hit>),
    /// Longer than `Options::max_text_chars`.
    Oversized,
    /// Names a tool of another server in the inventory.
    OtherServersTool,
}

#[derive(Debug)]
pub(crate) enum NameCheck {
    /// Mixes scripts (UTS #39 restriction level).
    MixedScript,
    /// Looks like another item's name (UTS #39 skeleton).
    Confusable,
}

/// A URL literal, shared by the rules for prose and for samples.
const URL: &str = r"\b(?:https?|ftps?|sftp|wss?|file|smb)://[^\s<>`'\x22)\]]+";

/// Every rule, in the order findings of one string are reported.
pub static RULES: &[Rule] = &[
    Rule {
        id: "instruction-tags",
        severity: Severity::High,
        summary: "pseudo-markup that addresses the model, such as <IMPORTANT>, <SYSTEM> or [INST]",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                < \s* /? \s*
                  (?: important | system | sys | instructions? | admin | hidden | critical | override
                    | assistant | user[_\s-]?instructions?
                    | (?:system|ai|assistant|model|llm|agent)[_\s-]?(?:prompt|message|note|instructions?|directive)
                    | note[_\s-]?to[_\s-]?(?:the[_\s-]?)?(?:ai|assistant|model|llm|agent)
                  ) (?:\s[^>]{0,40})? \s* >
                | \[ \s* /? \s* (?: inst | sys | system | important | instructions? | admin ) \s* \]
                | << \s* /? \s* sys \s* >>
                | <\| \s* (?: im_start | im_end | system | endoftext | start_header_id | end_header_id | eot_id ) \s* \|>
                ",
            ),
        ),
    },
    Rule {
        id: "instruction-override",
        severity: Severity::High,
        summary: "tells the model to ignore or outrank its other instructions or the user",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:ignore|disregard|forget|bypass|discard|set\s+aside)\s+
                  (?:(?:all|any|every|the|your|of|these|those|my|earlier|above|previous|prior)\s+){0,3}
                  (?:previous|prior|preceding|above|earlier|former|existing|original|initial|system|safety|security|other|old)\s+
                  (?:instructions?|prompts?|rules|directives?|guidelines|guidance|messages|context|constraints|polic(?:y|ies)|restrictions|commands|orders|directions)
                | \b(?:ignore|disregard|forget)\s+(?:everything|anything|all)\s+
                  (?:(?:that\s+)?you(?:\s+were|'ve\s+been|\s+have\s+been)\s+told|said|written|stated|above|before|earlier|previously)
                | \byou\s+are\s+now\s+(?:in\s+)?(?:an?\s+)?(?:developer|admin|god|unrestricted|jailbroken|dan|maintenance|debug|root)\b
                | \bnew\s+(?:system\s+)?(?:instructions|rules|directives)\s*:
                | \b(?:these|this|the\s+following)\s+(?:instructions?|rules?|directives?|notes?)\s+(?:take|takes|have|has|get|gets)\s+
                  (?:absolute\s+|highest\s+|top\s+)?(?:precedence|priority)
                | \b(?:supersedes?|overrides?|overrules?|takes?\s+precedence\s+over|(?:is|are)\s+more\s+important\s+than)\s+
                  (?:all\s+|any\s+)?(?:other\s+|previous\s+|prior\s+)?(?:system\s+|user\s+)?(?:instructions|rules|prompts?|directives|guidelines|requests)
                | \bregardless\s+of\s+(?:what\s+)?(?:the\s+)?(?:user|human)(?:'s)?\s+(?:says?|asks?|wants?|requests?|instructions?|intent|input|choice)
                | \b(?:no\s+matter|even\s+if)\s+(?:what\s+)?(?:the\s+)?(?:user|human)\s+(?:says?|asks?|wants?|requests?|instructs?|tells?)
                ",
            ),
        ),
    },
    Rule {
        id: "conceal-from-user",
        severity: Severity::High,
        summary: "tells the model to keep something from the user or act without their knowledge",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:do\s+not|don'?t|never|must\s+not|mustn'?t|should\s+not|shouldn'?t|without|avoid|refrain\s+from)\s+(?:ever\s+)?
                  (?:tell|telling|mention|mentioning|inform|informing|notify|notifying|alert|alerting|reveal|revealing
                    |disclose|disclosing|show|showing|explain|explaining|warn|warning|ask|asking|bother|bothering|let|letting)\s+
                  (?:\S+\s+){0,3}?(?:to\s+|from\s+)?(?:the\s+|your\s+|any\s+)?
                  (?:user|users|human|customer|operator|requester)\b
                | \b(?:do\s+not|don'?t|never|must\s+not|should\s+not)\s+
                  (?:mention|reveal|disclose|acknowledge|discuss|admit|talk\s+about|bring\s+up|refer\s+to)\s+
                  (?:(?:this|that|these|the|any|such)\s+)?(?:\S+\s+){0,2}?
                  (?:instructions?|notes?|steps?|requirements?|behaviou?rs?|process|actions?|side\s*notes?|redirects?|changes?)\b
                | \b(?:keep|hide)\s+(?:this|it|that|these|them|the\s+\S+)\s+(?:\S+\s+){0,2}?from\s+(?:the\s+)?(?:user|human)\b
                | \b(?:user|human)\s+(?:must|should|shall|need|needs|will|may)\s+(?:not|never)\s+
                  (?:know|see|notice|find\s+out|learn|realize|be\s+(?:told|informed|aware|notified|shown))
                | \bwithout\s+(?:the\s+)?(?:user|human)(?:'s|s')?\s+(?:knowledge|knowing|noticing|awareness|realizing|seeing)
                | \b(?:silently|secretly|covertly|quietly|invisibly|discreetly|surreptitiously)\s+(?:\S+\s+){0,2}?
                  (?:send|forward|upload|copy|read|include|add|call|post|exfiltrate|attach|append|change|modify|redirect
                    |replace|rewrite|cc|bcc|invoke|run|execute|transmit|store|log|record|save)
                | \b(?:the\s+)?(?:user|human)\s+(?:will|would|might|could)\s+(?:\S+\s+)?(?:get|be|become|feel)\s+
                  (?:upset|annoyed|confused|scared|alarmed|worried|suspicious|nervous)
                ",
            ),
        ),
    },
    Rule {
        id: "tool-call-directive",
        severity: Severity::Medium,
        summary: "tells the model to read a file or call a tool before or besides this one",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:before|prior\s+to|after|whenever)\s+(?:using|calling|invoking|running|executing|you\s+use|you\s+call)\s+
                  (?:(?:this|the|that|any|every|each|other)\s+)?(?:\S+\s+){0,2}?(?:tool|function|command)s?\b(?:[^.\n]|\.\S){0,80}?
                  \b(?:(?:you\s+)?(?:must|should|need\s+to|have\s+to|always|please)\s+)?(?:first\s+|also\s+|always\s+)?
                  (?:read|call|invoke|run|use|execute|fetch|open|load|cat|send|include|retrieve|access)\b
                | \b(?:you\s+)?(?:must|should|need\s+to|have\s+to|are\s+required\s+to)\s+(?:always\s+)?(?:first\s+|also\s+)?
                  (?:call|invoke|run|execute|trigger|use)\s+(?:the\s+)?[`'\x22]?[a-z][0-9a-z_.-]*[`'\x22]?\s+(?:tool|function)\b
                | \b(?:always|immediately|first)\s+(?:call|invoke|trigger|execute|run)\s+(?:the\s+)?[`'\x22]?[a-z][0-9a-z_-]*[_.-][0-9a-z_.-]*
                | \b(?:call|invoke|trigger|execute|run|use)\s+(?:the\s+)?[`'\x22]?[a-z][0-9a-z_.-]*[`'\x22]?\s+(?:tool|function)\s+
                  (?:first|beforehand|before|afterwards|after|whenever|instead|immediately|again)\b
                | \bthis\s+tool\s+(?:requires|needs)\s+(?:you\s+to\s+)?(?:first\s+)?(?:read|call|invoke|run|cat|open|load)\b
                ",
            ),
        ),
    },
    Rule {
        id: "side-channel-parameter",
        severity: Severity::High,
        summary: "tells the model to put file contents, secrets or conversation data into a parameter",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:pass|put|place|include|insert|add|append|attach|embed|copy|provide|send|fill|store|write|encode|supply|paste)\s+
                  (?:(?:the|its|their|all|any|this|that|your|user'?s?|full|entire|complete|raw|whole|exact|verbatim|file'?s?)\s+){0,3}
                  (?:contents?|data|output|results?|files?|keys?|secrets?|tokens?|(?:conversation|chat|message)\s+history|history|transcript|conversation|credentials|passwords?|it|them)\b
                  (?:\s+(?:of|from)\s+(?:[^.\n]|\.\S){1,120}?)?
                  \s+(?:as|in|into|inside|within|under|via|through|using)\s+(?:the\s+|a\s+|an\s+)?
                  (?:[`'\x22][0-9a-z_.-]+[`'\x22]|[0-9a-z_.-]+\s+(?:param|parameter|argument|arg|field|property|variable|input)s?\b)
                ",
            ),
        ),
    },
    Rule {
        id: "context-leak",
        severity: Severity::High,
        summary: "asks for the conversation, the system prompt or the model's instructions",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:include|send|pass|append|attach|copy|forward|paste|repeat|reveal|leak|share|upload|dump|quote|transmit|embed|echo|output)\s+
                  (?:\S+\s+){0,4}?
                  (?: (?:conversation|chat|message|dialog(?:ue)?|session)\s+(?:history|log|logs|transcript|so\s+far|context)
                    | (?:system|developer|hidden|initial)\s+(?:prompts?|message|instructions)
                    | previous\s+(?:messages|conversation|turns|exchanges)
                    | (?:all|every|any)\s+(?:prior|previous|earlier|other)\s+(?:messages|instructions|turns)
                    | (?:full|entire|whole|complete)\s+(?:conversation|transcript|chat|context(?:\s+window)?)
                    | your\s+(?:instructions|context\s+window|system\s+prompt|configuration|rules)
                  )\b
                ",
            ),
        ),
    },
    Rule {
        id: "sensitive-path",
        severity: Severity::High,
        summary: "names a credential store or private file (~/.ssh, id_rsa, .env, ~/.aws, mcp.json, browser profiles)",
        reads: Reads::Definitions,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                (?:~|\$home|\$\{home\}|%userprofile%|/home/[0-9a-z_.-]+|/users/[0-9a-z_.-]+|/root|c:\\users\\[0-9a-z_.-]+)?[/\\]
                  \.(?:ssh|aws|gnupg|kube|docker|azure|gcloud|config/gcloud|cursor|codeium|windsurf|continue|password-store
                    |electrum|bitcoin|ethereum|solana|mozilla|local/share/keyrings)\b
                | (?:^|[\s/\\`'\x22(=:,~])\.(?:env(?:\.[a-z]+)?|netrc|npmrc|pypirc|pgpass|git-credentials|bash_history|zsh_history)\b
                | \b(?:id_(?:rsa|dsa|ecdsa|ed25519)(?:\.pub)?|authorized_keys|known_hosts)\b
                | /etc/(?:passwd|shadow|gshadow|sudoers|master\.passwd|ssh/)
                | \b(?:mcp\.json|claude_desktop_config\.json|mcp_config\.json|mcp_settings\.json|credentials\.json
                    |wallet\.dat|login\.keychain(?:-db)?|cookies\.sqlite|logins\.json|key[34]\.db|kubeconfig)\b
                | \b(?:aws_secret_access_key|aws_access_key_id|private_key_id)\b
                | Library/(?:Keychains|Cookies|Application\s+Support/(?:Google/Chrome|Firefox|Claude))
                | AppData[\\/](?:Local|Roaming)[\\/](?:Google[\\/]Chrome|Mozilla|Microsoft[\\/]Edge|Claude)
                | \b(?:chrome|chromium|firefox|brave|edge|safari|opera)(?:'s)?\s+(?:user\s+)?profile\s+(?:folder|directory|dir|path)
                | \bLogin\s+Data\b
                ",
            ),
        ),
    },
    Rule {
        id: "secret-harvest",
        severity: Severity::Medium,
        summary: "tells the model to collect credentials, keys, cookies or wallets",
        reads: Reads::Definitions,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:read|cat|open|access|extract|collect|gather|dump|harvest|exfiltrate|steal|grab|scrape|export|copy|upload|leak|sniff|enumerate)\s+
                  (?:\S+\s+){0,3}?
                  (?:credentials|passwords?|private\s+keys?|ssh\s+keys?|api[\s_-]?keys?|secret\s+keys?|access\s+tokens?
                    |auth(?:entication)?\s+tokens?|bearer\s+tokens?|session\s+(?:cookies|tokens?)|(?:browser\s+)?cookies|keychains?
                    |(?:crypto(?:currency)?\s+)?wallets?|seed\s+phrases?|recovery\s+phrases?|mnemonic(?:\s+phrases?)?|saved\s+passwords
                    |environment\s+variables|env\s+vars)\b
                ",
            ),
        ),
    },
    Rule {
        id: "exfil-directive",
        severity: Severity::High,
        summary: "tells the model to send data to a literal URL, e-mail address or phone number, or to swap a recipient",
        reads: Reads::Definitions,
        check: Check::Text(
            Fields::All,
            TextCheck::Pattern(
                r"
                \b(?:send|upload|post|forward|transmit|exfiltrate|leak|e-?mail|mail|bcc|cc|copy|report|sync|mirror|beacon|relay
                    |deliver|route|redirect|reroute|dispatch|push|submit)\b(?:[^.\n]|\.\S){0,100}?
                  \b(?:to|into|at|via|towards?|on)\s+[`'\x22<(]?
                  (?:(?:https?|ftps?|wss?)://|[0-9a-z_.+-]+@[0-9a-z_-]+(?:\.[0-9a-z_-]+)+|\+?[0-9][0-9\s().-]{7,}[0-9]|[0-9]{1,3}(?:\.[0-9]{1,3}){3})
                | \bexfiltrat(?:e|es|ed|ing|ion)\b
                | \b(?:change|replace|set|switch|swap|override|rewrite)\s+(?:\S+\s+){0,3}?
                  (?:recipients?|destination|receiver|addressee|to[\s-]address|phone\s+number|chat[\s_-]?id|channel)\s+(?:to|with|into)\s+[`'\x22]?
                  (?:\+?[0-9][0-9\s().-]{7,}[0-9]|[0-9a-z_.+-]+@[0-9a-z_-]+(?:\.[0-9a-z_-]+)+|https?://)
                ",
            ),
        ),
    },
    Rule {
        id: "url-in-text",
        severity: Severity::Medium,
        summary: "a literal URL in prose the model reads (a possible exfiltration target)",
        reads: Reads::Definitions,
        check: Check::Text(Fields::Prose, TextCheck::Pattern(URL)),
    },
    Rule {
        id: "url-in-sample",
        severity: Severity::Low,
        summary: "a literal URL in a default, example, const or enum value",
        reads: Reads::Definitions,
        check: Check::Text(Fields::Samples, TextCheck::Pattern(URL)),
    },
    Rule {
        id: "email-address",
        severity: Severity::Medium,
        summary: "a literal e-mail address in prose the model reads (a possible exfiltration target)",
        reads: Reads::Definitions,
        check: Check::Text(
            Fields::Prose,
            TextCheck::Pattern(r"\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
        ),
    },
    Rule {
        id: "unicode-tags",
        severity: Severity::Critical,
        summary: "Unicode tag characters: invisible ASCII that the model reads",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(Fields::All, TextCheck::Chars(unicode::tag_characters)),
    },
    Rule {
        id: "bidi-control",
        severity: Severity::High,
        summary: "bidirectional embedding, override or isolate: shown text differs from read text",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(Fields::All, TextCheck::Chars(unicode::bidi_controls)),
    },
    Rule {
        id: "invisible-char",
        severity: Severity::Medium,
        summary: "zero-width, default-ignorable, control or stray variation-selector characters",
        reads: Reads::DefinitionsAndResults,
        check: Check::Text(Fields::All, TextCheck::Chars(unicode::invisible_characters)),
    },
    Rule {
        id: "mixed-script-name",
        severity: Severity::High,
        summary: "a name mixing scripts that look alike (Latin with Cyrillic), or using letters not fit for identifiers",
        reads: Reads::Definitions,
        check: Check::Name(NameCheck::MixedScript),
    },
    Rule {
        id: "confusable-name",
        severity: Severity::High,
        summary: "a name that looks like another item's name (same UTS #39 skeleton)",
        reads: Reads::Definitions,
        check: Check::Name(NameCheck::Confusable),
    },
    Rule {
        id: "cross-server-reference",
        severity: Severity::High,
        summary: "names a tool of another server (shadowing: steering how that tool is used)",
        reads: Reads::Definitions,
        check: Check::Text(Fields::Readable, TextCheck::OtherServersTool),
    },
    Rule {
        id: "oversized-text",
        severity: Severity::Low,
        summary: "a string longer than the configured bound, room to bury instructions in",
        reads: Reads::Definitions,
        check: Check::Text(Fields::All, TextCheck::Oversized),
    },
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.id == id)
}

impl Rule {
    /// Whether the rule reads items of this kind.
    pub fn applies_to(&self, kind: ItemKind) -> bool {
        kind.is_definition() || self.reads == Reads::DefinitionsAndResults
    }
}

/// The text rules that read strings of one field of one kind of item, by
/// index in `RULES`: the pattern rules apart, as they run only when the
/// pattern set matches.
#[derive(Debug, Default)]
pub(crate) struct TextRules {
    pub(crate) patterns: Vec<usize>,
    pub(crate) others: Vec<(usize, &'static TextCheck)>,
}

/// The text rules for a string in `field` of an item of `kind`, worked out
/// once, not for every string.
pub(crate) fn text_rules(kind: ItemKind, field: Field) -> &'static TextRules {
    static TABLE: LazyLock<Vec<((bool, Field), TextRules)>> = LazyLock::new(|| {
        let mut table = Vec::new();
        for kind in [ItemKind::Tool, ItemKind::ToolResult] {
            for field in [Field::Prose, Field::Sample, Field::Locator] {
                let mut rules = TextRules::default();
                for (index, rule) in RULES.iter().enumerate() {
                    match &rule.check {
                        Check::Text(fields, check)
                            if rule.applies_to(kind) && fields.contains(field) =>
                        {
                            match check {
                                TextCheck::Pattern(_) => rules.patterns.push(index),
                                _ => rules.others.push((index, check)),
                            }
                        }
                        _ => {}
                    }
                }
                table.push(((kind.is_definition(), field), rules));
            }
        }
        table
    });
    static NONE: TextRules = TextRules {
        patterns: Vec::new(),
        others: Vec::new(),
    };
    TABLE
        .iter()
        .find(|(key, _)| *key == (kind.is_definition(), field))
        .map_or(&NONE, |(_, rules)| rules)
}

/// Every pattern rule's regex: all of them compiled once into a set that
/// says which match, and each alone, compiled the first time it must say
/// where (in a clean inventory, hardly ever).
pub(crate) struct Patterns {
    pub(crate) set: RegexSet,
    /// For each rule in `RULES`, its index in `set`, its source and its
    /// regex once compiled.
    by_rule: Vec<Option<(usize, String, OnceLock<Regex>)>>,
}

impl Patterns {
    /// Where the rule at `index` in `RULES` matches, given the set's
    /// matches for the same text.
    pub(crate) fn find(
        &self,
        index: usize,
        matched: &regex::SetMatches,
        text: &str,
    ) -> Option<std::ops::Range<usize>> {
        let (slot, source, regex) = self.by_rule[index].as_ref()?;
        if !matched.matched(*slot) {
            return None;
        }
        let regex = regex.get_or_init(|| compile(source));
        regex.find(text).map(|m| m.range())
    }
}

/// One rule's regex, built like the set: case-insensitive, verbose.
fn compile(source: &str) -> Regex {
    RegexBuilder::new(source)
        .case_insensitive(true)
        .ignore_whitespace(true)
        .build()
        .expect("the rule patterns compile, as the set does")
}

pub(crate) static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    // `\b` is compiled as an ASCII word boundary: the patterns' words are
    // ASCII, and the lazy DFA gives up on Unicode word boundaries in
    // non-ASCII text, falling back to a far slower engine.
    let sources: Vec<Option<String>> = RULES
        .iter()
        .map(|rule| match rule.check {
            Check::Text(_, TextCheck::Pattern(pattern)) => {
                Some(pattern.replace(r"\b", r"(?-u:\b)"))
            }
            _ => None,
        })
        .collect();
    let set = RegexSetBuilder::new(sources.iter().flatten())
        .case_insensitive(true)
        .ignore_whitespace(true)
        .build()
        .expect("the rule patterns compile (tested)");
    let mut slot = 0;
    let by_rule = sources
        .into_iter()
        .map(|source| {
            source.map(|source| {
                slot += 1;
                (slot - 1, source, OnceLock::new())
            })
        })
        .collect();
    Patterns { set, by_rule }
});

#[cfg(test)]
mod tests;
