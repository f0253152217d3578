//! A small RFC 4180 CSV reader and writer for the register's import and the exports (register,
//! inventory, filtering history, compliance): quoted fields,
//! doubled quotes, commas and line breaks inside quotes, CRLF or LF, a UTF-8 byte-order mark
//! (spreadsheets add one). Rows are numbered as a spreadsheet shows them: the header is row 1.

/// Parse `text` into records. An error names the row where the quoting went wrong.
pub fn parse(text: &str) -> Result<Vec<Vec<String>>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    // Whether the current field started with a quote and its closing quote was seen.
    let mut closed_quote = false;
    let mut row_has_content = false;
    while let Some(c) = chars.next() {
        let row_no = rows.len() + 1;
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    in_quotes = false;
                    closed_quote = true;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !closed_quote => {
                in_quotes = true;
                row_has_content = true;
            }
            '"' => {
                return Err((row_no, "a quote inside an unquoted field: put the whole field in quotes and double the quote".into()));
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                closed_quote = false;
                row_has_content = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                row.push(std::mem::take(&mut field));
                closed_quote = false;
                if row_has_content || row.iter().any(|f| !f.is_empty()) {
                    rows.push(std::mem::take(&mut row));
                } else {
                    row.clear();
                }
                row_has_content = false;
            }
            _ if closed_quote => {
                return Err((row_no, "text after a closing quote: a quoted field must end at a comma or the end of the line".into()));
            }
            _ => {
                field.push(c);
                row_has_content = true;
            }
        }
    }
    if in_quotes {
        return Err((rows.len() + 1, "a quoted field is never closed".into()));
    }
    row.push(field);
    if row_has_content || row.iter().any(|f| !f.is_empty()) {
        rows.push(row);
    }
    Ok(rows)
}

/// Append one CSV line (CRLF, as RFC 4180 says). Cells that a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@` first) are prefixed with `'`; the import strips it again.
pub fn write_row<'a>(out: &mut String, cells: impl IntoIterator<Item = &'a str>) {
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let guarded;
        let cell = if cell.starts_with(['=', '+', '-', '@']) {
            guarded = format!("'{cell}");
            guarded.as_str()
        } else {
            cell
        };
        if cell.contains([',', '"', '\n', '\r']) || cell.starts_with(' ') || cell.ends_with(' ') {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(cell);
        }
    }
    out.push_str("\r\n");
}

/// Undo the export's formula guard.
pub fn unguard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest,
        _ => cell,
    }
}

/// Quote a CSV cell when needed, and defuse formula injection for spreadsheet users.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quotes_and_line_breaks() {
        let text = "\u{feff}a,b,c\r\n1,\"two, too\",\"say \"\"hi\"\"\"\r\n\r\n4,\"line\nbreak\",\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows, vec![vec!["a", "b", "c"], vec!["1", "two, too", "say \"hi\""], vec!["4", "line\nbreak", ""],]);
        assert_eq!(parse("a,b\n1,\"open").unwrap_err().0, 2);
        assert_eq!(parse("a,b\n1,x\"y\n").unwrap_err().0, 2);
        assert_eq!(parse("a\n\"x\"y\n").unwrap_err().0, 2);
        assert_eq!(parse("a,b").unwrap(), vec![vec!["a", "b"]]);
    }

    #[test]
    fn writes_what_it_reads() {
        let mut out = String::new();
        write_row(&mut out, ["plain", "with, comma", "quote \"q\"", "=SUM(A1)", ""]);
        assert_eq!(out, "plain,\"with, comma\",\"quote \"\"q\"\"\",'=SUM(A1),\r\n");
        let back = parse(&out).unwrap();
        assert_eq!(unguard(&back[0][3]), "=SUM(A1)");
        assert_eq!(back[0][1], "with, comma");
    }
}
