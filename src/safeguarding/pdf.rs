//! A minimal PDF writer: pages of monospaced text, enough for a printable custody report
//! without a PDF library. Long lines wrap; non-ASCII characters are replaced.

use std::fmt::Write;

const LINES_PER_PAGE: usize = 64;
const COLUMNS: usize = 110;

fn escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for ch in line.chars() {
        match ch {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            ' '..='~' => out.push(ch),
            _ => out.push('?'),
        }
    }
    out
}

/// Wrap at `COLUMNS` characters, indenting continuation lines.
fn wrap(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for l in lines {
        let chars: Vec<char> = l.chars().collect();
        if chars.is_empty() {
            out.push(String::new());
            continue;
        }
        let mut first = true;
        for chunk in chars.chunks(COLUMNS - 4) {
            let s: String = chunk.iter().collect();
            out.push(if first { s } else { format!("    {s}") });
            first = false;
        }
    }
    out
}

/// A PDF (A4, Courier 8pt) holding `lines`.
pub fn text_pdf(lines: &[String]) -> Vec<u8> {
    let lines = wrap(lines);
    let pages: Vec<&[String]> = lines.chunks(LINES_PER_PAGE).collect();
    let pages = if pages.is_empty() { vec![&[][..]] } else { pages };
    // Objects: 1 catalog, 2 pages, 3 font, then per page: page object and content stream.
    let mut objects: Vec<String> = Vec::new();
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..pages.len()).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Courier >>".into());
    for (i, page) in pages.iter().enumerate() {
        let mut stream = String::from("BT /F1 8 Tf 10 TL 36 806 Td\n");
        for (n, line) in page.iter().enumerate() {
            if n > 0 {
                stream.push_str("T*\n");
            }
            let _ = writeln!(stream, "({}) Tj", escape(line));
        }
        let _ = write!(stream, "ET\nBT /F1 7 Tf 36 20 Td (Page {} of {}) Tj ET", i + 1, pages.len());
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{}\nendstream", stream.len(), stream));
    }
    let mut out = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        let _ = write!(out, "{} 0 obj\n{}\nendobj\n", i + 1, obj);
    }
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        let _ = writeln!(out, "{o:010} 00000 n ");
    }
    let _ = write!(out, "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn makes_a_pdf_with_pages_and_xref() {
        let lines: Vec<String> = (0..150).map(|i| format!("line {i} (with parens) and a very long tail {}", "x".repeat(i))).collect();
        let pdf = String::from_utf8(super::text_pdf(&lines)).unwrap();
        assert!(pdf.starts_with("%PDF-1.4"));
        assert!(pdf.contains("/Count ") && pdf.trim_end().ends_with("%%EOF"));
        assert!(pdf.contains("\\(with parens\\)"));
        // The xref offset points at the xref table.
        let start: usize = pdf.rsplit("startxref\n").next().unwrap().lines().next().unwrap().parse().unwrap();
        assert!(pdf[start..].starts_with("xref"));
    }
}
