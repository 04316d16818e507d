//! Free text the API stores and shows again (names, salutation, device names, person fields):
//! plain rules refusing what no form would send and what turns a log or a screen against its
//! reader. Refused: control characters (C0, DEL, C1), the bidi embeddings, overrides and
//! isolates (U+202A–U+202E, U+2066–U+2069), values that are blank or only zero-width
//! characters, and values longer than the field's documented cap.

use super::error::ApiError;

/// Largest `device_data` accepted, in bytes: it is stored and never interpreted.
pub const MAX_DEVICE_DATA: usize = 4 * 1024;

/// Why a text value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFault {
    /// Empty, whitespace or zero-width characters only.
    Blank,
    /// More characters than the cap.
    TooLong,
    /// A C0 or C1 control character or DEL.
    Control,
    /// A bidi embedding, override or isolate.
    Bidi,
}

/// Characters that take no room: a value of only these (and whitespace) reads as empty.
fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{180E}'
    )
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The rule as a plain function: `None` when `value` is acceptable free text of at most
/// `max_chars` characters.
pub fn text_fault(value: &str, max_chars: usize) -> Option<TextFault> {
    if value.chars().any(char::is_control) {
        // char::is_control is exactly C0, DEL and C1 (general category Cc).
        return Some(TextFault::Control);
    }
    if value.chars().any(is_bidi_control) {
        return Some(TextFault::Bidi);
    }
    if value.chars().all(|c| c.is_whitespace() || is_zero_width(c)) {
        return Some(TextFault::Blank);
    }
    if value.chars().count() > max_chars {
        return Some(TextFault::TooLong);
    }
    None
}

/// Checks a free-text field, refusing with 400 `validation_error` naming it.
pub fn check_text(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    let Some(fault) = text_fault(value, max_chars) else {
        return Ok(());
    };
    let why = match fault {
        TextFault::Blank => "must not be empty, blank or only zero-width characters".to_owned(),
        TextFault::TooLong => format!("must be at most {max_chars} characters"),
        TextFault::Control => {
            "must not contain control characters (U+0000-U+001F, U+007F-U+009F)".to_owned()
        }
        TextFault::Bidi => {
            "must not contain bidi embedding, override or isolate characters (U+202A-U+202E, U+2066-U+2069)"
                .to_owned()
        }
    };
    Err(ApiError::validation_error(format!("`{field}` {why}")).field(field))
}

/// Refuses a `device_data` over [`MAX_DEVICE_DATA`] bytes.
pub fn check_device_data(value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.len() > MAX_DEVICE_DATA => Err(ApiError::validation_error(format!(
            "`device_data` has {} bytes; at most {MAX_DEVICE_DATA} are accepted",
            v.len()
        ))
        .field("device_data")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_in_any_script_pass() {
        for ok in [
            "Ada",
            "Zoë",
            "O'Brien-Smith",
            "李小龙",
            "عائشة",
            "Ana María",
            "a\u{200D}b",
        ] {
            assert_eq!(text_fault(ok, 200), None, "{ok:?}");
        }
    }

    #[test]
    fn control_bidi_blank_and_long_values_are_refused() {
        for (bad, fault) in [
            ("Ada\u{0}", TextFault::Control),
            ("Ada\nLovelace", TextFault::Control),
            ("\u{1b}[31mAda", TextFault::Control),
            ("Ada\u{7f}", TextFault::Control),
            ("Ada\u{85}", TextFault::Control),
            ("Ada\u{9b}", TextFault::Control),
            ("\u{202E}adA", TextFault::Bidi),
            ("Ada\u{202A}", TextFault::Bidi),
            ("Ada\u{2066}x\u{2069}", TextFault::Bidi),
            ("", TextFault::Blank),
            ("   ", TextFault::Blank),
            ("\u{200B}\u{200B}", TextFault::Blank),
            ("\u{FEFF} \u{2060}", TextFault::Blank),
        ] {
            assert_eq!(text_fault(bad, 200), Some(fault), "{bad:?}");
        }
        assert_eq!(text_fault(&"é".repeat(201), 200), Some(TextFault::TooLong));
        assert_eq!(text_fault(&"é".repeat(200), 200), None);
    }

    #[test]
    fn the_refusal_names_the_field() {
        let e = check_text("last_name", "x\u{202E}", 200).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.field.as_deref()),
            ("validation_error", Some("last_name"))
        );
        assert!(e.detail.contains("bidi"), "{}", e.detail);
    }

    #[test]
    fn device_data_is_capped_at_4_kib() {
        assert!(check_device_data(Some(&"x".repeat(4096))).is_ok());
        let e = check_device_data(Some(&"x".repeat(4097))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("device_data"));
        assert!(check_device_data(None).is_ok());
    }
}
