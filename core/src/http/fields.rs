//! Header fields as a server holds them: every line in order, a field
//! named on several lines given as several entries. Reading them here, once,
//! is what keeps the two servers from disagreeing (Apache's `apr_table_get`
//! reads only the first line of a field).

/// One header line: its name and value, as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Field<'a> {
    pub fn new(name: &'a str, value: &'a str) -> Field<'a> {
        Field { name: name.as_bytes(), value: value.as_bytes() }
    }
}

/// Every line of field `name` (case-insensitive), in order.
pub fn lines<'a>(fields: &'a [Field<'a>], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(name.as_bytes())).map(|f| f.value)
}

/// Is field `name` present at all?
pub fn has(fields: &[Field<'_>], name: &str) -> bool {
    fields.iter().any(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
}

/// The elements of a comma-separated list field over all its lines
/// (RFC 9110 §5.6.1), trimmed, empty ones dropped. Commas inside quoted
/// strings (`private="Set-Cookie, Set-Cookie2"`) do not split.
pub fn list<'a>(fields: &'a [Field<'a>], name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    lines(fields, name).flat_map(split_list)
}

/// The elements of one list value (see [`list`]).
pub fn split_list(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = v;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let (mut quoted, mut escaped, mut end) = (false, false, rest.len());
        for (i, &b) in rest.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = trim(&rest[..end]);
        rest = if end < rest.len() { &rest[end + 1..] } else { &[] };
        if !item.is_empty() {
            return Some(item);
        }
    })
}

/// A list element's token before any `;` parameters or `=` value, trimmed.
pub fn token(item: &[u8]) -> &[u8] {
    let end = item.iter().position(|&b| b == b';' || b == b'=').unwrap_or(item.len());
    trim(&item[..end])
}

/// Does list field `name` hold directive or token `t` (case-insensitive)?
pub fn list_has(fields: &[Field<'_>], name: &str, t: &str) -> bool {
    list(fields, name).any(|i| token(i).eq_ignore_ascii_case(t.as_bytes()))
}

/// Trims optional whitespace (RFC 9110 OWS) at both ends.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = v {
        if first.is_ascii_whitespace() {
            v = rest
        } else {
            break;
        }
    }
    while let [rest @ .., last] = v {
        if last.is_ascii_whitespace() {
            v = rest
        } else {
            break;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_span_lines_and_respect_quotes() {
        let f = [
            Field::new("Cache-Control", "max-age=60"),
            Field::new("Vary", "Cookie"),
            Field::new("cache-control", r#"private="Set-Cookie, X", no-transform"#),
            Field::new("VARY", " User-Agent ,, "),
        ];
        let cc: Vec<&[u8]> = list(&f, "Cache-Control").collect();
        assert_eq!(cc, [&b"max-age=60"[..], br#"private="Set-Cookie, X""#, b"no-transform"]);
        assert!(list_has(&f, "cache-control", "No-Transform"));
        assert!(!list_has(&f, "cache-control", "x"));
        let vary: Vec<&[u8]> = list(&f, "vary").collect();
        assert_eq!(vary, [&b"Cookie"[..], b"User-Agent"]);
        assert_eq!(token(b"max-age=60"), b"max-age");
        assert_eq!(token(b" gzip;q=0.5 "), b"gzip");
        let esc: Vec<&[u8]> = split_list(br#"a="x\",y", b"#).collect();
        assert_eq!(esc, [&br#"a="x\",y""#[..], b"b"]);
    }
}
