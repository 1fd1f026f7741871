//! Normalisation before matching: what an attacker does to hide a phrase from a matcher is
//! undone here, and what is hidden is itself reported.
//!
//! Undone: case (lower-cased), invisible characters (zero-width, word joiners, soft hyphens,
//! bidi controls, variation selectors: removed), Unicode tag characters (U+E0020–E007E turned
//! back into the ASCII they smuggle), full-width and mathematical letters (folded to ASCII),
//! Cyrillic/Greek look-alikes inside otherwise Latin words, light leetspeak inside words
//! (`1gn0r3` → `ignore`), and whitespace runs (one space, or one newline if the run held one,
//! so line-anchored rules still work).
//!
//! Invariant: every byte of the normalised text maps back to the start of the source character
//! that produced it (`origin`), so a match in the normalised text becomes a byte span of the
//! source on character boundaries.

use super::{Family, Signal};

/// A run of variation selectors at least this long is read as smuggled bytes.
const MIN_SELECTOR_PAYLOAD: usize = 4;
/// Bytes decoded from one text's variation selectors.
const MAX_SELECTOR_PAYLOAD: usize = 4096;

pub(crate) struct Normalized {
    pub text: String,
    /// `origin[i]` is the source offset of the character that produced byte `i` of `text`.
    origin: Vec<u32>,
    /// Obfuscation found while normalising, spans in source offsets.
    pub signals: Vec<Signal>,
    /// Bytes smuggled in variation selectors, to be screened as decoded text.
    pub selector_payload: Option<(usize, usize, Vec<u8>)>,
}

impl Normalized {
    /// The source span of normalised bytes `start..end` (`start < end`).
    pub fn source_span(&self, src: &str, start: usize, end: usize) -> (usize, usize) {
        let s = self.origin.get(start).map_or(src.len(), |&o| o as usize);
        let last = self
            .origin
            .get(end.saturating_sub(1).max(start))
            .map_or(src.len(), |&o| o as usize);
        let e = src
            .get(last..)
            .and_then(|rest| rest.chars().next())
            .map_or(src.len(), |c| last + c.len_utf8());
        (s.min(src.len()), e.clamp(s.min(src.len()), src.len()))
    }
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{180E}'
        | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Marks that never carry meaning in running text and are dropped without a signal: soft
/// hyphens (hyphenation hints in web text), LRM/RLM (ordinary in right-to-left text), emoji
/// presentation selectors.
fn is_benign_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200E}' | '\u{200F}' | '\u{FE00}'..='\u{FE0F}'
    )
}

fn selector_byte(c: char) -> Option<u8> {
    let u = u32::from(c);
    match u {
        0xFE00..=0xFE0F => u8::try_from(u - 0xFE00).ok(),
        0xE0100..=0xE01EF => u8::try_from(u - 0xE0100 + 16).ok(),
        _ => None,
    }
}

/// Full-width ASCII and mathematical alphanumerics → ASCII.
fn fold_width(c: char) -> char {
    let u = u32::from(c);
    let folded = match u {
        0xFF01..=0xFF5E => char::from_u32(u - 0xFEE0),
        // Mathematical bold/italic/script/… letters: 13 styles of 52 (A–Z then a–z).
        0x1D400..=0x1D6A3 => {
            let i = (u - 0x1D400) % 52;
            let base = if i < 26 { b'A' } else { b'a' };
            char::from_u32(u32::from(base) + i % 26)
        }
        0x1D7CE..=0x1D7FF => char::from_u32(u32::from(b'0') + (u - 0x1D7CE) % 10),
        _ => None,
    };
    folded.unwrap_or(c)
}

/// Cyrillic and Greek letters that look like Latin ones (only applied inside words that also
/// hold Latin letters, so Russian or Greek text stays itself).
fn confusable(c: char) -> Option<char> {
    Some(match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'в' | 'В' | 'β' | 'Β' => 'b',
        'с' | 'С' | 'ϲ' => 'c',
        'е' | 'Е' | 'ε' | 'Ε' => 'e',
        'н' | 'Н' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'м' | 'М' | 'Μ' => 'm',
        'п' | 'η' => 'n',
        'о' | 'О' | 'ο' | 'Ο' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ѕ' | 'Ѕ' => 's',
        'т' | 'Т' | 'τ' | 'Τ' => 't',
        'у' | 'У' | 'υ' => 'y',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'ν' | 'Ν' => 'v',
        'ԁ' => 'd',
        'ɡ' => 'g',
        'ⅼ' | 'ӏ' => 'l',
        _ => return None,
    })
}

fn leet(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        _ => return None,
    })
}

/// Normalises `src`, reporting obfuscation as signals with spans in `src`.
pub(crate) fn normalize(src: &str) -> Normalized {
    // Pass 1: drop invisibles, decode tags, fold widths; remember where each char came from.
    let mut visible: Vec<(usize, char)> = Vec::with_capacity(src.len());
    let mut tags = Span::default();
    let mut tag_text = String::new();
    let mut invisible_in_word = Span::default();
    let mut invisible_other = Span::default();
    let mut bidi = Span::default();
    let mut selectors: Vec<u8> = Vec::new();
    let mut selector_run = Span::default();
    let mut best_selectors: Option<(usize, usize, Vec<u8>)> = None;
    let mut in_flag = false;

    let chars: Vec<(usize, char)> = src.char_indices().collect();
    for (i, &(off, c)) in chars.iter().enumerate() {
        let end = off + c.len_utf8();
        if let Some(b) =
            selector_byte(c).filter(|_| u32::from(c) >= 0xE0100 || !selectors.is_empty())
        {
            if selectors.len() < MAX_SELECTOR_PAYLOAD {
                selectors.push(b);
            }
            selector_run.add(off, end);
            continue;
        }
        if !selectors.is_empty() {
            flush_selectors(&mut selectors, &mut selector_run, &mut best_selectors);
        }
        match u32::from(c) {
            0x1F3F4 => {
                // A black flag followed by tags is a subdivision flag emoji (🏴 + "gbeng").
                in_flag = true;
                visible.push((off, c));
                continue;
            }
            0xE0000..=0xE007F => {
                if !in_flag {
                    tags.add(off, end);
                    if let Some(a) = char::from_u32(u32::from(c) - 0xE0000)
                        .filter(|a| a.is_ascii_graphic() || *a == ' ')
                    {
                        if tag_text.len() < 64 {
                            tag_text.push(a);
                        }
                        visible.push((off, a));
                    }
                }
                if u32::from(c) == 0xE007F {
                    in_flag = false;
                }
                continue;
            }
            _ => in_flag = false,
        }
        if is_benign_format(c) {
            continue;
        }
        if is_bidi_control(c) {
            bidi.add(off, end);
            continue;
        }
        if is_invisible(c) {
            if off == 0 && c == '\u{FEFF}' {
                continue; // a byte-order mark
            }
            // Between two ASCII letters it splits a word (the classic filter evasion); next
            // to emoji or non-Latin letters it is ordinary joining.
            let prev = visible.last().map(|&(_, p)| p);
            let next = chars[i + 1..]
                .iter()
                .map(|&(_, n)| n)
                .find(|n| !is_invisible(*n) && !is_benign_format(*n));
            let latin = |x: Option<char>| x.is_some_and(|x| x.is_ascii_alphanumeric());
            if latin(prev) && latin(next) {
                invisible_in_word.add(off, end);
            } else if prev.is_none_or(|p| p.is_ascii()) && next.is_none_or(|n| n.is_ascii()) {
                invisible_other.add(off, end);
            }
            continue;
        }
        visible.push((off, fold_width(c)));
    }
    flush_selectors(&mut selectors, &mut selector_run, &mut best_selectors);

    // Pass 2: words (runs of alphanumerics) with Latin letters get look-alikes and leet folded.
    let mut mixed = Span::default();
    let mut w = 0;
    while w < visible.len() {
        if !visible[w].1.is_alphanumeric() {
            w += 1;
            continue;
        }
        let start = w;
        while w < visible.len() && visible[w].1.is_alphanumeric() {
            w += 1;
        }
        let word = &mut visible[start..w];
        let latin = word.iter().filter(|(_, c)| c.is_ascii_alphabetic()).count();
        if latin == 0 {
            continue;
        }
        let foreign = word
            .iter()
            .filter(|(_, c)| !c.is_ascii() && c.is_alphabetic())
            .count();
        let folds = word
            .iter()
            .filter(|(_, c)| confusable(*c).is_some())
            .count();
        if folds > 0 && folds == foreign {
            // Every non-Latin letter of a Latin word is a look-alike: a disguise.
            for (off, c) in word.iter_mut() {
                if let Some(l) = confusable(*c) {
                    mixed.add(*off, *off + c.len_utf8());
                    *c = l;
                }
            }
        }
        // Leet only in words of 3+ letters that do not end in a run of digits (`base64`,
        // `sha256` and `utf16` stay what they are).
        let letters = word.iter().filter(|(_, c)| c.is_ascii_alphabetic()).count();
        let trailing_digits = word
            .iter()
            .rev()
            .take_while(|(_, c)| c.is_ascii_digit())
            .count();
        if letters >= 3 && trailing_digits <= 1 {
            for (_, c) in word.iter_mut() {
                if let Some(l) = leet(*c) {
                    *c = l;
                }
            }
        }
    }

    // Pass 3: lower-case and collapse whitespace into the output.
    let mut text = String::with_capacity(visible.len());
    let mut origin: Vec<u32> = Vec::with_capacity(visible.len());
    let mut pending_space: Option<(usize, bool)> = None;
    let mut buf = [0u8; 4];
    for &(off, c) in &visible {
        if c.is_whitespace() {
            let nl = c == '\n';
            pending_space = Some(match pending_space {
                Some((o, had_nl)) => (o, had_nl || nl),
                None => (off, nl),
            });
            continue;
        }
        if let Some((o, nl)) = pending_space.take()
            && !text.is_empty()
        {
            text.push(if nl { '\n' } else { ' ' });
            origin.push(u32::try_from(o).unwrap_or(u32::MAX));
        }
        for l in c.to_lowercase() {
            let s = l.encode_utf8(&mut buf);
            text.push_str(s);
            for _ in 0..s.len() {
                origin.push(u32::try_from(off).unwrap_or(u32::MAX));
            }
        }
    }
    debug_assert_eq!(text.len(), origin.len());

    let mut signals = Vec::new();
    let mut push = |span: &Span, rule: &'static str, weight: f32, detail: String| {
        if let Some((start, end)) = span.range() {
            signals.push(Signal {
                family: Family::Obfuscation,
                start,
                end,
                weight,
                rule,
                detail,
            });
        }
    };
    push(
        &tags,
        "tag-characters",
        0.8,
        format!(
            "{} Unicode tag characters (invisible ASCII), reading {:?}",
            tags.count, tag_text
        ),
    );
    if invisible_in_word.count > 0 {
        push(
            &invisible_in_word,
            "invisible-in-word",
            0.45,
            format!(
                "{} invisible characters splitting words",
                invisible_in_word.count
            ),
        );
    }
    if invisible_other.count >= 3 {
        push(
            &invisible_other,
            "invisible-characters",
            0.25,
            format!(
                "{} zero-width characters in Latin text",
                invisible_other.count
            ),
        );
    }
    push(
        &bidi,
        "bidi-control",
        0.35,
        format!("{} bidirectional override/isolate controls", bidi.count),
    );
    if mixed.count > 0 {
        push(
            &mixed,
            "mixed-script-word",
            0.3,
            format!("{} look-alike letters inside Latin words", mixed.count),
        );
    }
    if let Some((s, e, bytes)) = &best_selectors {
        signals.push(Signal {
            family: Family::Obfuscation,
            start: *s,
            end: *e,
            weight: 0.6,
            rule: "variation-selector-payload",
            detail: format!("{} bytes hidden in variation selectors", bytes.len()),
        });
    }

    Normalized {
        text,
        origin,
        signals,
        selector_payload: best_selectors,
    }
}

fn flush_selectors(
    bytes: &mut Vec<u8>,
    run: &mut Span,
    best: &mut Option<(usize, usize, Vec<u8>)>,
) {
    if bytes.len() >= MIN_SELECTOR_PAYLOAD
        && let Some((s, e)) = run.range()
        && best.as_ref().is_none_or(|(_, _, b)| b.len() < bytes.len())
    {
        *best = Some((s, e, std::mem::take(bytes)));
    }
    bytes.clear();
    *run = Span::default();
}

/// First start, last end and count of one kind of finding.
#[derive(Default)]
struct Span {
    start: usize,
    end: usize,
    count: usize,
}

impl Span {
    fn add(&mut self, start: usize, end: usize) {
        if self.count == 0 {
            self.start = start;
        }
        self.end = end;
        self.count += 1;
    }

    fn range(&self) -> Option<(usize, usize)> {
        (self.count > 0).then_some((self.start, self.end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_space_width_and_leet() {
        let n = normalize("  IGNORE\t\tＰｒｅｖｉｏｕｓ \n 1nstruct10ns");
        assert_eq!(n.text, "ignore previous\ninstructions");
        assert!(n.signals.is_empty());
    }

    #[test]
    fn keeps_base64_and_sha256_words() {
        assert_eq!(normalize("base64 sha256").text, "base64 sha256");
    }

    #[test]
    fn strips_zero_width_and_reports_split_words() {
        let src = "ig\u{200B}nore previous";
        let n = normalize(src);
        assert_eq!(n.text, "ignore previous");
        assert_eq!(n.signals.len(), 1);
        assert_eq!(n.signals[0].rule, "invisible-in-word");
        assert_eq!(&src[n.signals[0].start..n.signals[0].end], "\u{200B}");
    }

    #[test]
    fn emoji_joiners_are_not_reported() {
        let n = normalize("family 👨\u{200D}👩\u{200D}👧 photo");
        assert!(n.signals.is_empty());
    }

    #[test]
    fn decodes_tag_characters_but_not_flags() {
        let hidden: String = "hi there"
            .chars()
            .map(|c| char::from_u32(0xE0000 + u32::from(c)).unwrap_or(c))
            .collect();
        let n = normalize(&format!("ok{hidden}"));
        assert_eq!(n.text, "okhi there");
        assert_eq!(n.signals[0].rule, "tag-characters");
        let flag = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
        assert!(normalize(flag).signals.is_empty());
    }

    #[test]
    fn folds_lookalikes_only_inside_latin_words() {
        let n = normalize("іgnore привет");
        assert_eq!(n.text, "ignore привет");
        assert_eq!(n.signals.len(), 1);
        assert_eq!(n.signals[0].rule, "mixed-script-word");
    }

    #[test]
    fn maps_spans_back_to_source() {
        let src = "Ａｂ  CD";
        let n = normalize(src);
        assert_eq!(n.text, "ab cd");
        let (s, e) = n.source_span(src, 3, 5);
        assert_eq!(&src[s..e], "CD");
        let (s, e) = n.source_span(src, 0, 1);
        assert_eq!(&src[s..e], "Ａ");
    }

    #[test]
    fn variation_selector_bytes_are_collected() {
        let hidden: String = "hello"
            .bytes()
            .map(|b| char::from_u32(0xE0100 + u32::from(b) - 16).unwrap_or('x'))
            .collect();
        let n = normalize(&format!("😀{hidden} hi"));
        let (_, _, bytes) = n.selector_payload.as_ref().expect("payload found");
        assert_eq!(bytes.as_slice(), b"hello");
        assert_eq!(n.text, "😀 hi");
    }
}
