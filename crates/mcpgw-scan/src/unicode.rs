//! Character-level checks: text the model reads but a human does not see
//! (tag characters, bidirectional controls, zero-width and other invisible
//! characters), and names that look like other names (UTS #39 skeletons,
//! mixed scripts).
//!
//! The character properties come from crates (general category, bidi
//! class, UTS #39 identifier type and confusables); the only ranges written
//! here are the tag block and the variation selectors, which no crate
//! exposes as a property. Nothing here knows about JSON or rules.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::sync::LazyLock;

use unicode_bidi::{BidiClass, bidi_class};
use unicode_general_category::{GeneralCategory, get_general_category};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

use crate::finding::Hit;

/// The Unicode tag block (U+E0000..U+E007F): invisible twins of ASCII that
/// models read as text, the classic way to smuggle instructions.
const TAGS: RangeInclusive<char> = '\u{E0000}'..='\u{E007F}';

/// The variation selectors (VS1..VS16 and the supplement VS17..VS256).
const VARIATION_SELECTORS: [RangeInclusive<char>; 2] =
    ['\u{FE00}'..='\u{FE0F}', '\u{E0100}'..='\u{E01EF}'];

/// ZERO WIDTH NON-JOINER and ZERO WIDTH JOINER, which some scripts and
/// emoji sequences need between two non-ASCII characters.
const JOINERS: [char; 2] = ['\u{200C}', '\u{200D}'];

/// How many smuggled tag characters a finding's message spells out.
const DECODED_CHARS: usize = 80;

pub(crate) fn is_tag(c: char) -> bool {
    TAGS.contains(&c)
}

fn is_variation_selector(c: char) -> bool {
    VARIATION_SELECTORS.iter().any(|range| range.contains(&c))
}

/// Embeddings, overrides and isolates: the controls that reorder how text
/// is displayed (the "Trojan Source" characters).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        bidi_class(c),
        BidiClass::LRE
            | BidiClass::RLE
            | BidiClass::LRO
            | BidiClass::RLO
            | BidiClass::PDF
            | BidiClass::LRI
            | BidiClass::RLI
            | BidiClass::FSI
            | BidiClass::PDI
    )
}

/// Whether `c` draws nothing a reader would notice: format and control
/// characters, default-ignorable code points and variation selectors.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        get_general_category(c),
        GeneralCategory::Format | GeneralCategory::Control
    ) || c.identifier_type() == Some(IdentifierType::Default_Ignorable)
        || is_variation_selector(c)
}

/// Whether `text` is printable ASCII, tabs and line breaks only, which no
/// character check reports: the scan skips them for such text.
pub(crate) fn is_plain(text: &str) -> bool {
    // A fold rather than `all`: without the early exit it vectorizes.
    text.bytes().fold(true, |plain, b| {
        plain & matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r')
    })
}

/// Whether the text has right-to-left letters, where directional marks are
/// ordinary.
fn has_rtl(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_alphabetic() && matches!(bidi_class(c), BidiClass::R | BidiClass::AL))
}

/// Writes `c` for a human: invisible characters as `<U+XXXX>`, newline and
/// tab as `\n` and `\t`, everything else as itself.
pub(crate) fn write_visible(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        c if is_invisible(c) => {
            // Writing to a String cannot fail.
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        }
        c => out.push(c),
    }
}

/// The first run of tag characters, and the ASCII they spell.
pub(crate) fn tag_characters(text: &str) -> Option<Hit> {
    let start = text.find(is_tag)?;
    let run_len: usize = text[start..]
        .chars()
        .take_while(|&c| is_tag(c))
        .map(char::len_utf8)
        .sum();
    let run = &text[start..start + run_len];
    let decoded: String = run
        .chars()
        .filter_map(|c| char::from_u32(u32::from(c) - u32::from(*TAGS.start())))
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(DECODED_CHARS)
        .collect();
    let count = run.chars().count();
    Some(Hit::saying(
        start..start + run_len,
        format!("{count} tag characters spelling \"{decoded}\""),
    ))
}

/// The first bidirectional embedding, override or isolate.
pub(crate) fn bidi_controls(text: &str) -> Option<Hit> {
    let (start, c) = text
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() && is_bidi_control(c))?;
    Some(Hit::saying(
        start..start + c.len_utf8(),
        format!("U+{:04X} reorders the text a human sees", u32::from(c)),
    ))
}

/// The first invisible character that is not a tag or bidi control (their
/// own rules report those) and not innocent where it stands: a joiner
/// between two non-ASCII characters, a variation selector right after the
/// character it varies, a directional mark in right-to-left text, or an
/// ordinary tab or line break.
pub(crate) fn invisible_characters(text: &str) -> Option<Hit> {
    let mut rtl = None;
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let suspicious = is_invisible(c)
            && !matches!(c, '\t' | '\n' | '\r')
            && !is_tag(c)
            && !is_bidi_control(c)
            && !innocent_in_place(c, prev, next, || *rtl.get_or_insert_with(|| has_rtl(text)));
        if suspicious {
            return Some(Hit::saying(
                start..start + c.len_utf8(),
                format!("invisible U+{:04X}", u32::from(c)),
            ));
        }
        prev = Some(c);
    }
    None
}

fn innocent_in_place(
    c: char,
    prev: Option<char>,
    next: Option<char>,
    rtl: impl FnOnce() -> bool,
) -> bool {
    let visible_non_ascii = |c: Option<char>| c.is_some_and(|c| !c.is_ascii() && !is_invisible(c));
    if JOINERS.contains(&c) {
        return visible_non_ascii(prev) && visible_non_ascii(next);
    }
    if is_variation_selector(c) {
        // Keycap sequences (`1️⃣`) put VS16 after an ASCII digit, `#` or `*`.
        let keycap_base = prev.is_some_and(|p| p.is_ascii_digit() || p == '#' || p == '*');
        return visible_non_ascii(prev) || keycap_base;
    }
    // Directional marks (LRM, RLM, ALM) are the format characters with a
    // strong bidi class; right-to-left text uses them routinely.
    let directional_mark = matches!(bidi_class(c), BidiClass::L | BidiClass::R | BidiClass::AL)
        && get_general_category(c) == GeneralCategory::Format;
    directional_mark && rtl()
}

/// Whether a non-ASCII name is less than what UTS #39 calls moderately
/// restrictive: it mixes Latin with Cyrillic or Greek, for instance, or
/// uses letters not allowed in identifiers (mathematical bold). Only
/// letters and digits count: separators are not scripts.
pub(crate) fn is_mixed_script(name: &str) -> bool {
    if name.is_ascii() {
        return false;
    }
    let letters: String = name.chars().filter(|c| c.is_alphanumeric()).collect();
    letters.detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive
}

/// The UTS #39 confusable skeleton: two names with the same skeleton look
/// alike.
pub(crate) fn skeleton(name: &str) -> String {
    // ASCII is its own NFD and its prototypes are ASCII, so an ASCII
    // name's skeleton is its characters' skeletons end to end: the crate's
    // answers for the 128 characters, worked out once.
    static ASCII: LazyLock<Vec<String>> = LazyLock::new(|| {
        (0..128u8)
            .map(|b| unicode_security::skeleton(char::from(b).encode_utf8(&mut [0; 4])).collect())
            .collect()
    });
    if name.is_ascii() {
        name.bytes()
            .map(|b| ASCII[usize::from(b)].as_str())
            .collect()
    } else {
        unicode_security::skeleton(name).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;

    fn spans(check: fn(&str) -> Option<Hit>, text: &str) -> Option<Range<usize>> {
        check(text).map(|hit| hit.span)
    }

    #[test]
    fn plain_text_is_found_by_no_character_check() {
        let plain: String = (' '..='~').chain(['\t', '\n', '\r']).collect();
        assert!(is_plain(&plain));
        for check in [tag_characters, bidi_controls, invisible_characters] {
            assert_eq!(check(&plain), None);
        }
        assert!(!is_plain("\u{1B}[0m") && !is_plain("café"));
    }

    #[test]
    fn tag_characters_are_found_and_spelled_out() {
        let smuggled: String = "hi you"
            .chars()
            .map(|c| char::from_u32(u32::from(c) + 0xE0000).unwrap())
            .collect();
        let hit = tag_characters(&format!("ok{smuggled}!")).unwrap();
        assert_eq!(hit.span, 2..2 + 6 * 4);
        assert_eq!(hit.detail.unwrap(), "6 tag characters spelling \"hi you\"");
        assert_eq!(tag_characters("plain text"), None);
    }

    #[test]
    fn bidi_overrides_and_isolates_are_found_but_not_marks() {
        assert_eq!(spans(bidi_controls, "abc\u{202E}fed"), Some(3..6));
        assert_eq!(spans(bidi_controls, "x\u{2066}y\u{2069}"), Some(1..4));
        assert_eq!(spans(bidi_controls, "mark\u{200F}only"), None);
    }

    #[test]
    fn invisible_characters_are_found_unless_innocent_where_they_stand() {
        let found = |text: &str| spans(invisible_characters, text).is_some();
        // Suspicious.
        assert!(found("pass\u{200B}word"));
        assert!(found("read\u{200D}file"));
        assert!(found("\u{FEFF}leading bom"));
        assert!(found("soft\u{AD}hyphen"));
        assert!(found("ansi \u{1B}[2J clear"));
        assert!(found("a\u{FE0F}\u{FE01}"));
        assert!(found("hangul filler \u{3164} blank"));
        assert!(found("mark \u{200F} in latin"));
        // Innocent.
        assert!(!found("plain\ttext\nwith breaks\r\n"));
        assert!(!found("family 👨\u{200D}👩\u{200D}👧"));
        assert!(!found("heart ❤\u{FE0F} and keycap 1\u{FE0F}\u{20E3}"));
        assert!(!found("می\u{200C}خواهم"));
        assert!(!found("שלום \u{200F}(abc)"));
        assert!(!found("café naïve 東京"));
    }

    #[test]
    fn names_mixing_latin_with_cyrillic_are_mixed_script() {
        assert!(is_mixed_script("r\u{435}ad_file"));
        assert!(!is_mixed_script("read_file"));
        assert!(!is_mixed_script("чтение_файла"));
        assert!(!is_mixed_script("get_天気"));
        assert!(!is_mixed_script("résumé"));
        assert!(is_mixed_script("\u{1D42B}\u{1D41E}\u{1D41A}\u{1D41D}_file"));
    }

    #[test]
    fn ascii_skeletons_are_the_crates() {
        let ascii: String = (0..128u8).map(char::from).collect();
        for name in [ascii.as_str(), "modern_rn_Il1|0O", "read_file", ""] {
            assert_eq!(
                skeleton(name),
                unicode_security::skeleton(name).collect::<String>()
            );
        }
    }

    #[test]
    fn homoglyph_names_share_a_skeleton() {
        assert_eq!(skeleton("r\u{435}ad_file"), skeleton("read_file"));
        assert_ne!(skeleton("read_file"), skeleton("write_file"));
    }

    #[test]
    fn invisible_characters_are_written_visibly() {
        let mut out = String::new();
        for c in "a\u{200B}\u{E0041}\n".chars() {
            write_visible(c, &mut out);
        }
        assert_eq!(out, "a<U+200B><U+E0041>\\n");
    }
}
