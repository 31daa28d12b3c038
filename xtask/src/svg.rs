//! What the SVG figures share (`results/*/figure.svg`, the time series of
//! `cargo xtask fairness`): the start of the document, text escaping and
//! the colours of the lines.

use std::fmt::Write as _;

/// Colours of the lines, in order (one per policy, VM or configuration).
pub const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// `s` escaped for SVG text.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Starts an SVG document of `w` × `h` px on a white background, in
/// sans-serif of `font_size` px; with `view_box` it scales to its container.
/// The caller closes it with `</svg>`.
pub fn start(s: &mut String, w: f64, h: f64, font_size: u32, view_box: bool) {
    let vb = if view_box {
        format!(r#" viewBox="0 0 {w} {h}""#)
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}"{vb} font-family="sans-serif" font-size="{font_size}">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        // Escaped once only: the ampersands of the entities are not escaped again.
        assert_eq!(esc("&lt;"), "&amp;lt;");
        assert_eq!(esc("nice -5 (idle)"), "nice -5 (idle)");
    }

    #[test]
    fn document_start() {
        let mut s = String::new();
        start(&mut s, 820.0, 760.0, 13, true);
        assert_eq!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"820\" height=\"760\" \
             viewBox=\"0 0 820 760\" font-family=\"sans-serif\" font-size=\"13\">\n\
             <rect width=\"820\" height=\"760\" fill=\"white\"/>\n"
        );
        let mut s = String::new();
        start(&mut s, 760.5, 380.0, 12, false);
        assert!(s.starts_with(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"760.5\" height=\"380\" \
             font-family=\"sans-serif\" font-size=\"12\">\n"
        ));
        assert!(!s.contains("viewBox"));
    }
}
