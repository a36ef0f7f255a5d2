//! RSS 2.0 built from real content: the entries of one version of
//! ../shared/corpus/atom-feed, with the same identities (`guid`), titles,
//! links, content and dates (RFC 822). Shared by hsync-core's feed tests
//! and the server tests (tests/src/feed.rs includes this file).

use hsync_core::feed;

/// RSS 2.0 from the Atom entries of one version: the same identities
/// (`guid`), titles, links, content and dates (RFC 822).
pub fn to_rss(atom: &[u8]) -> Vec<u8> {
    let f = feed::parse(atom).unwrap();
    let text = String::from_utf8(atom.to_vec()).unwrap();
    let between = |s: &str, open: &str, close: &str| -> String {
        let Some(a) = s.find(open).map(|p| p + open.len()) else { return String::new() };
        s[a..a + s[a..].find(close).unwrap()].to_string()
    };
    // The content of the first element `name` (attributes skipped).
    let element = |s: &str, name: &str| -> String {
        let Some(a) = s.find(&format!("<{name}")) else { return String::new() };
        let a = a + s[a..].find('>').unwrap() + 1;
        s[a..a + s[a..].find(&format!("</{name}>")).unwrap()].to_string()
    };
    let head = &text[..f.entries[0].span.start];
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<rss version=\"2.0\">\n<channel>\n");
    out += &format!("  <title>{}</title>\n", element(head, "title"));
    out += "  <link>http://mlz000.github.io/</link>\n  <description>converted from the Atom feed</description>\n";
    out += &format!("  <lastBuildDate>{}</lastBuildDate>\n\n", rfc822(&element(head, "updated")));
    for e in &f.entries {
        let s = &text[e.span.clone()];
        let link = between(s, "<link href=\"", "\"");
        out += "  <item>\n";
        out += &format!("    <title>{}</title>\n", element(s, "title"));
        out += &format!("    <link>{link}</link>\n");
        out += &format!(
            "    <guid isPermaLink=\"false\">{}</guid>\n",
            String::from_utf8_lossy(&e.id).replace('&', "&amp;").replace('<', "&lt;")
        );
        out += &format!("    <pubDate>{}</pubDate>\n", rfc822(std::str::from_utf8(&e.version).unwrap()));
        out += &format!("    <description>{}</description>\n", element(s, "content"));
        out += "  </item>\n\n";
    }
    out += "</channel>\n</rss>\n";
    out.into_bytes()
}

/// `2015-09-20T16:05:34.660Z` as `Sun, 20 Sep 2015 16:05:34 GMT`.
pub fn rfc822(w3c: &str) -> String {
    let (y, m, d) = (w3c[0..4].parse::<i64>().unwrap(), w3c[5..7].parse::<usize>().unwrap(), w3c[8..10].parse::<i64>().unwrap());
    let t = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let yy = if m < 3 { y - 1 } else { y };
    let wd = (yy + yy / 4 - yy / 100 + yy / 400 + t[m - 1] + d) % 7;
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!("{}, {d:02} {} {y} {} GMT", days[wd as usize], months[m - 1], &w3c[11..19])
}
