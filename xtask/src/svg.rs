//! What the SVG figures share (`results/*/figure.svg`, the time series of
//! `cargo xtask fairness`): the start of the document, text escaping, the
//! colours of the lines, and a line of points with error bars.

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

/// A point of a [`line_with_bars`], in px: its centre and, for a spread,
/// the y of the bar's two ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    pub bar: Option<(f64, f64)>,
}

/// How a [`line_with_bars`] is drawn: its colour, extra attributes of the
/// line (e.g. ` stroke-dasharray="6,4"`), the radius of its dots and the
/// half-width of its bars' caps (px).
#[derive(Clone, Copy, Debug)]
pub struct LineStyle<'a> {
    pub color: &'a str,
    pub dash: &'a str,
    pub dot_r: f64,
    pub cap: f64,
}

/// The x offset of line `i` of `n` lines `step` px apart, centred on 0, so
/// that the bars of lines at the same x stay apart.
pub fn spread(i: usize, n: usize, step: f64) -> f64 {
    (i as f64 - (n.max(1) as f64 - 1.0) / 2.0) * step
}

/// A polyline through `marks`, at each mark its bar (a vertical line with
/// caps) and a dot; nothing without marks.
pub fn line_with_bars(s: &mut String, marks: &[Mark], st: &LineStyle) {
    if marks.is_empty() {
        return;
    }
    let c = st.color;
    let path: Vec<String> = marks
        .iter()
        .map(|m| format!("{:.1},{:.1}", m.x, m.y))
        .collect();
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"{}/>"#,
        path.join(" "),
        st.dash
    );
    for m in marks {
        let x = m.x;
        if let Some((lo, hi)) = m.bar {
            let (l, r) = (x - st.cap, x + st.cap);
            let _ = writeln!(
                s,
                r#"<path d="M{x:.1},{lo:.1}V{hi:.1}M{l:.1},{lo:.1}H{r:.1}M{l:.1},{hi:.1}H{r:.1}" stroke="{c}" stroke-width="1.2"/>"#
            );
        }
        let _ = writeln!(
            s,
            r#"<circle cx="{x:.1}" cy="{:.1}" r="{}" fill="{c}"/>"#,
            m.y, st.dot_r
        );
    }
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

    #[test]
    fn lines_with_bars() {
        assert_eq!(spread(0, 4, 4.0), -6.0);
        assert_eq!(spread(3, 4, 4.0), 6.0);
        assert_eq!(spread(1, 3, 2.5), 0.0);
        assert_eq!(spread(0, 0, 4.0), 0.0);
        let st = LineStyle {
            color: "#123456",
            dash: r#" stroke-dasharray="6,4""#,
            dot_r: 3.5,
            cap: 4.0,
        };
        let mut s = String::new();
        line_with_bars(&mut s, &[], &st);
        assert_eq!(s, "", "no marks, no line");
        let marks = [
            Mark {
                x: 10.0,
                y: 50.0,
                bar: None,
            },
            Mark {
                x: 20.04,
                y: 40.0,
                bar: Some((45.0, 35.0)),
            },
        ];
        line_with_bars(&mut s, &marks, &st);
        assert_eq!(
            s,
            "<polyline points=\"10.0,50.0 20.0,40.0\" fill=\"none\" stroke=\"#123456\" \
             stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\n\
             <circle cx=\"10.0\" cy=\"50.0\" r=\"3.5\" fill=\"#123456\"/>\n\
             <path d=\"M20.0,45.0V35.0M16.0,45.0H24.0M16.0,35.0H24.0\" stroke=\"#123456\" \
             stroke-width=\"1.2\"/>\n\
             <circle cx=\"20.0\" cy=\"40.0\" r=\"3.5\" fill=\"#123456\"/>\n"
        );
    }
}
