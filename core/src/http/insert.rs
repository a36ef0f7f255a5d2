//! Inserting an element into an HTML page as it streams: right after its
//! `<head ...>` tag (as nginx's `sub_filter` would, but for this one use:
//! the `<link rel="compression-dictionary">` of RFC 9842, which Chromium
//! fetches when it finds it in a page, not when it is only a header).
//!
//! At most [`SCAN`] bytes are held back while looking for the tag; a page
//! without one in its first bytes is passed on unchanged.

/// How far into a page the `<head>` tag is looked for.
pub const SCAN: usize = 16 << 10;

/// Streams a page, inserting `element` once after its `<head ...>` tag.
pub struct Inserter {
    element: Vec<u8>,
    held: Vec<u8>,
    /// Bytes of the page looked at so far (held or passed on).
    seen: usize,
    done: bool,
    /// Whether the element went in.
    pub inserted: bool,
}

impl Inserter {
    pub fn new(element: impl Into<Vec<u8>>) -> Inserter {
        Inserter { element: element.into(), held: Vec::new(), seen: 0, done: false, inserted: false }
    }

    /// Feeds a piece of the page; appends what can go on to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done {
            out.extend_from_slice(data);
            return;
        }
        self.held.extend_from_slice(data);
        self.seen += data.len();
        match find_head_end(&self.held) {
            Some(at) => {
                out.extend_from_slice(&self.held[..at]);
                out.extend_from_slice(&self.element);
                out.extend_from_slice(&self.held[at..]);
                self.inserted = true;
                self.release();
            }
            None if self.seen >= SCAN => {
                out.extend_from_slice(&self.held);
                self.release();
            }
            None => {}
        }
    }

    /// The end of the page: whatever is held.
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            out.extend_from_slice(&self.held);
            self.release();
        }
    }

    /// A flush the server asked for before the end (a proxy whose backend
    /// paused): what is held goes on, but for the start of a `<head` tag
    /// cut by the pause, and the tag is still looked for in what follows
    /// (up to [`SCAN`] bytes in all), so that a page flushed before its
    /// `<head>` still gets the element.
    pub fn flush_partial(&mut self, out: &mut Vec<u8>) {
        if !self.done {
            let keep = partial_tag_start(&self.held);
            out.extend_from_slice(&self.held[..keep]);
            self.held.drain(..keep);
        }
    }

    fn release(&mut self) {
        self.done = true;
        self.held = Vec::new();
    }
}

/// Where a `<head` tag that the rest of the page may complete begins in
/// `b` (`b.len()` when there is none).
fn partial_tag_start(b: &[u8]) -> usize {
    let Some(i) = b.iter().rposition(|&c| c == b'<') else { return b.len() };
    let t = &b[i..];
    let n = t.len().min(5);
    let prefix = t[..n].eq_ignore_ascii_case(&b"<head"[..n]);
    let open = t.len() <= 5 || ((t[5].is_ascii_whitespace() || t[5] == b'/') && !t.contains(&b'>'));
    if prefix && open {
        i
    } else {
        b.len()
    }
}

/// The offset just after the first `<head>` or `<head ...>` tag (not
/// `<header>`), if the whole tag is in `b`.
fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 5 < b.len() {
        if b[i] == b'<' && b[i + 1..i + 5].eq_ignore_ascii_case(b"head") {
            let next = b[i + 5];
            if next == b'>' {
                return Some(i + 6);
            }
            if next.is_ascii_whitespace() || next == b'/' {
                return b[i + 5..].iter().position(|&c| c == b'>').map(|j| i + 5 + j + 1);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(page: &[u8], piece: usize) -> (Vec<u8>, bool) {
        let mut ins = Inserter::new(&b"<link rel=x>"[..]);
        let mut out = Vec::new();
        for c in page.chunks(piece.max(1)) {
            ins.feed(c, &mut out);
        }
        ins.flush(&mut out);
        (out, ins.inserted)
    }

    #[test]
    fn inserts_after_the_head_tag_wherever_the_pieces_fall() {
        for piece in [1, 3, 7, 100] {
            let (out, ok) = run(b"<!doctype html><html><HEAD lang=en><title>t</title></head><body><header>h</header>", piece);
            assert!(ok);
            assert_eq!(out, b"<!doctype html><html><HEAD lang=en><link rel=x><title>t</title></head><body><header>h</header>".to_vec());
        }
        let (out, ok) = run(b"<html><head><meta charset=utf-8>", 2);
        assert!(ok);
        assert_eq!(out, b"<html><head><link rel=x><meta charset=utf-8>".to_vec());
    }

    #[test]
    fn a_flush_before_the_head_tag_does_not_lose_it() {
        let page = b"<!doctype html>\n<html lang=en>\n<head><title>t</title></head>";
        for cut in 1..page.len() {
            for (a, b) in [(cut, cut), (cut.saturating_sub(3), cut)] {
                let mut ins = Inserter::new(&b"<link rel=x>"[..]);
                let mut out = Vec::new();
                ins.feed(&page[..a], &mut out);
                ins.flush_partial(&mut out);
                ins.feed(&page[a..b], &mut out);
                ins.flush_partial(&mut out);
                ins.feed(&page[b..], &mut out);
                ins.flush(&mut out);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    "<!doctype html>\n<html lang=en>\n<head><link rel=x><title>t</title></head>",
                    "flushed at {a} and {b}"
                );
            }
        }
        // What a flush passes on before the tag is out at once.
        let mut ins = Inserter::new(&b"<link rel=x>"[..]);
        let mut out = Vec::new();
        ins.feed(b"<!doctype html><html><he", &mut out);
        ins.flush_partial(&mut out);
        assert_eq!(out, b"<!doctype html><html>".to_vec());
    }

    #[test]
    fn leaves_pages_without_a_head_unchanged() {
        let (out, ok) = run(b"<html><header>no head here</header><body>x</body>", 5);
        assert!(!ok);
        assert_eq!(out, b"<html><header>no head here</header><body>x</body>".to_vec());
        let long: Vec<u8> = b"<p>".iter().cycle().take(SCAN + 100).copied().chain(*b"<head>").collect();
        let (out, ok) = run(&long, 4096);
        assert!(!ok, "only the first bytes are searched");
        assert_eq!(out, long);
    }
}
