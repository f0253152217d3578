//! The custody report as a PDF with real, searchable Unicode text: A4 pages, a header on every
//! page (the case and "Page N of M"), headings, wrapped paragraphs, and tables that break across
//! pages with their header row repeated.
//!
//! Built on typst's low-level crates rather than a layout engine: `pdf-writer` writes the PDF
//! objects, `ttf-parser` reads the font's character map and glyph advances (the layout below
//! measures and wraps text with them), and `subsetter` keeps only the glyphs a report uses, so a
//! report embeds a few tens of kilobytes of font, not 740 kB. With `miniz_oxide` (which compresses
//! the streams and brings `adler2`) that is five new crates in the build, all small and
//! dependency-light (pdf-writer's bitflags, itoa, memchr and ryu were already in the tree, as was
//! unicode-normalization, used below for NFC). `krilla` does the same jobs on top of these
//! crates but brings text shaping, images and font tooling (skrifa, rustybuzz, flate2, image
//! decoders: dozens of crates) that a table of names and hashes does not need; `printpdf` brings
//! its HTML/layout engine (azul).
//!
//! The font is DejaVu Sans (`fonts/DejaVuSans.ttf`, licence in `fonts/LICENSE-DejaVu.txt`),
//! which covers Latin Extended (Welsh ŵ ŷ, Polish Ł, Turkish ş, Vietnamese ễ), Greek, Cyrillic
//! and the typographic punctuation. Text is NFC-normalised and drawn one glyph per character,
//! without shaping: right for the Latin, Greek and Cyrillic scripts of pupils' names; Arabic or
//! Indic names would show unjoined glyphs. Each distinct character gets its own CID and the
//! `/ToUnicode` map names it, so copying or extracting the text gives back exactly what was
//! stored, even for a character the font lacks (drawn as the font's empty box).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use ttf_parser::{Face, GlyphId};
use unicode_normalization::UnicodeNormalization;

/// DejaVu Sans 2.37 (Debian's fonts-dejavu-core); see `fonts/LICENSE-DejaVu.txt`.
static FONT_DATA: &[u8] = include_bytes!("../../../fonts/DejaVuSans.ttf");
const FONT_NAME: &str = "DejaVuSans";

static FACE: LazyLock<Option<Face<'static>>> = LazyLock::new(|| Face::parse(FONT_DATA, 0).ok());

// A4 in points, and the printable area.
const PAGE_W: f32 = 595.276;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 40.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
const HEADER_SIZE: f32 = 8.0;
const HEADER_FIRST_BASELINE: f32 = PAGE_H - 34.0;
const HEADER_LEADING: f32 = 10.5;
const BODY_BOTTOM: f32 = 40.0;

const TITLE_SIZE: f32 = 15.0;
const HEADING_SIZE: f32 = 11.0;
const TEXT_SIZE: f32 = 9.0;
const TEXT_LEADING: f32 = 12.0;
const TABLE_SIZE: f32 = 7.5;
const TABLE_LEADING: f32 = 9.3;
const CELL_PAD_X: f32 = 3.0;
const CELL_PAD_Y: f32 = 2.5;
const HEADER_FILL: f32 = 0.87;
const KEY_FILL: f32 = 0.94;
const RULE_GRAY: f32 = 0.55;

/// The embedded font's metrics, in em.
struct Font {
    face: Option<&'static Face<'static>>,
    upem: f32,
}

impl Font {
    fn get() -> Font {
        let face = FACE.as_ref();
        Font { face, upem: face.map_or(1000.0, |f| f32::from(f.units_per_em())) }
    }

    fn gid(&self, c: char) -> u16 {
        self.face.and_then(|f| f.glyph_index(c)).map_or(0, |g| g.0)
    }

    fn advance_gid(&self, gid: u16) -> f32 {
        // Without the font (it is compiled in: cannot happen) a rough average width.
        self.face.map_or(500.0, |f| f32::from(f.glyph_hor_advance(GlyphId(gid)).unwrap_or(0))) / self.upem
    }

    fn width(&self, s: &str, size: f32) -> f32 {
        s.chars().map(|c| self.advance_gid(self.gid(c))).sum::<f32>() * size
    }

    fn ascent(&self) -> f32 {
        self.face.map_or(0.93, |f| f32::from(f.ascender()) / self.upem)
    }

    fn descent(&self) -> f32 {
        self.face.map_or(-0.24, |f| f32::from(f.descender()) / self.upem)
    }
}

/// NFC (so a decomposed "é" is one glyph), tabs as spaces, other control characters dropped.
fn clean(s: &str) -> String {
    s.nfc()
        .filter_map(|c| match c {
            '\t' => Some(' '),
            '\n' => Some('\n'),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Break `text` into lines at most `width` points wide at `size`: at spaces where possible,
/// inside a word only when the word alone is too wide. Newlines start a new line.
fn wrap(font: &Font, text: &str, size: f32, width: f32) -> Vec<String> {
    let space = font.width(" ", size);
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        let mut w = 0.0;
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            let ww = font.width(word, size);
            if !line.is_empty() && w + space + ww <= width {
                line.push(' ');
                line.push_str(word);
                w += space + ww;
                continue;
            }
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            if ww <= width {
                line.push_str(word);
                w = ww;
                continue;
            }
            // A word wider than the line (a timestamp, a UDID, JSON): break it inside, at a
            // natural point where there is one.
            w = 0.0;
            for c in word.chars() {
                let cw = font.width(c.encode_utf8(&mut [0; 4]), size);
                while !line.is_empty() && w + cw > width {
                    let chars: Vec<char> = line.chars().collect();
                    let at = break_point(&chars);
                    out.push(chars[..at].iter().collect());
                    line = chars[at..].iter().collect();
                    w = font.width(&line, size);
                }
                line.push(c);
                w += cw;
            }
        }
        out.push(line);
    }
    out
}

/// Where to break a word too wide for its line: after a date's T, between camelCase words, after
/// _ / , ; (else after - : .), not in its first third; else wherever the line is full.
fn break_point(chars: &[char]) -> usize {
    let min = (chars.len() / 3).max(1);
    let strong = |i: usize| {
        let (a, b) = (chars[i - 1], chars[i]);
        matches!(a, '_' | '/' | ',' | ';')
            || (a == 'T' && i >= 2 && chars[i - 2].is_ascii_digit())
            || (a.is_lowercase() && b.is_uppercase())
    };
    let weak = |i: usize| matches!(chars[i - 1], '-' | ':' | '.');
    let last = |f: &dyn Fn(usize) -> bool| (min..chars.len()).rev().find(|i| f(*i));
    last(&strong).or_else(|| last(&weak)).unwrap_or(chars.len())
}

pub struct Column {
    pub title: String,
    /// Share of the table's width (the weights need not add up to anything).
    pub weight: f32,
}

impl Column {
    pub fn new(title: &str, weight: f32) -> Column {
        Column { title: title.to_owned(), weight }
    }
}

enum Block {
    Title(String),
    Heading(String),
    Paragraph(String),
    /// Label/value rows, no header row.
    Fields(Vec<(String, String)>),
    Table {
        columns: Vec<Column>,
        rows: Vec<Vec<String>>,
    },
}

/// A document: blocks laid out top to bottom, under a header repeated on every page.
pub struct Document {
    title: String,
    header: Vec<String>,
    blocks: Vec<Block>,
}

impl Document {
    /// `title` is the PDF's metadata title; `header` the lines at the top of every page (the
    /// first line also carries "Page N of M" on the right).
    pub fn new(title: &str, header: &[String]) -> Document {
        Document { title: clean(title), header: header.iter().map(|h| clean(h)).collect(), blocks: Vec::new() }
    }

    pub fn title(&mut self, s: &str) {
        self.blocks.push(Block::Title(clean(s)));
    }

    pub fn heading(&mut self, s: &str) {
        self.blocks.push(Block::Heading(clean(s)));
    }

    pub fn paragraph(&mut self, s: &str) {
        self.blocks.push(Block::Paragraph(clean(s)));
    }

    pub fn fields(&mut self, rows: Vec<(String, String)>) {
        self.blocks.push(Block::Fields(rows.into_iter().map(|(k, v)| (clean(&k), clean(&v))).collect()));
    }

    pub fn table(&mut self, columns: Vec<Column>, rows: Vec<Vec<String>>) {
        let columns = columns.into_iter().map(|c| Column { title: clean(&c.title), weight: c.weight }).collect();
        self.blocks.push(Block::Table { columns, rows: rows.into_iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect() });
    }

    /// The laid-out pages (without their headers, which need the page count).
    fn layout(&self, font: &Font) -> Vec<Vec<Op>> {
        let body_top = HEADER_FIRST_BASELINE - HEADER_LEADING * (self.header.len().max(1) as f32 - 1.0) - 8.0 - 14.0;
        let mut l = Layout { font, pages: vec![Vec::new()], y: body_top, top: body_top };
        for b in &self.blocks {
            match b {
                Block::Title(s) => l.lines(&wrap(font, s, TITLE_SIZE, CONTENT_W), TITLE_SIZE, TITLE_SIZE * 1.3, 4.0, 6.0),
                Block::Heading(s) => {
                    // Keep a heading with at least a few lines of what follows it.
                    l.need(14.0 + HEADING_SIZE * 1.3 + 4.0 * TABLE_LEADING + 2.0 * CELL_PAD_Y);
                    l.lines(&wrap(font, s, HEADING_SIZE, CONTENT_W), HEADING_SIZE, HEADING_SIZE * 1.3, 14.0, 4.0)
                }
                Block::Paragraph(s) => l.lines(&wrap(font, s, TEXT_SIZE, CONTENT_W), TEXT_SIZE, TEXT_LEADING, 0.0, 6.0),
                Block::Fields(rows) => {
                    let columns = [Column::new("", 1.0), Column::new("", 4.2)];
                    let rows: Vec<Vec<String>> = rows.iter().map(|(k, v)| vec![k.clone(), v.clone()]).collect();
                    l.table(&columns, false, &rows);
                }
                Block::Table { columns, rows } => l.table(columns, true, rows),
            }
        }
        l.pages
    }

    pub fn render(&self) -> Vec<u8> {
        let font = Font::get();
        let pages = self.layout(&font);
        let total = pages.len();
        let mut cids = Cids::default();

        let mut alloc = Ref::new(1);
        let catalog_id = alloc.bump();
        let tree_id = alloc.bump();
        let info_id = alloc.bump();
        let type0_id = alloc.bump();
        let cid_font_id = alloc.bump();
        let descriptor_id = alloc.bump();
        let to_unicode_id = alloc.bump();
        let cid_to_gid_id = alloc.bump();
        let font_file_id = alloc.bump();
        let page_ids: Vec<(Ref, Ref)> = (0..total).map(|_| (alloc.bump(), alloc.bump())).collect();

        let mut pdf = Pdf::new();
        pdf.catalog(catalog_id).pages(tree_id).lang(TextStr("en-GB"));
        pdf.pages(tree_id).kids(page_ids.iter().map(|p| p.0)).count(total as i32);
        pdf.document_info(info_id).title(TextStr(&self.title)).producer(TextStr("Lanyard"));

        for (n, (ops, (page_id, content_id))) in pages.iter().zip(&page_ids).enumerate() {
            let mut c = Content::new();
            let page_label = format!("Page {} of {}", n + 1, total);
            let mut header = Vec::new();
            for (i, h) in self.header.iter().enumerate() {
                let y = HEADER_FIRST_BASELINE - HEADER_LEADING * i as f32;
                let room = if i == 0 { CONTENT_W - font.width(&page_label, HEADER_SIZE) - 12.0 } else { CONTENT_W };
                // One line each: a header too long for the page is cut, not wrapped.
                let line = wrap(&font, h, HEADER_SIZE, room).into_iter().next().unwrap_or_default();
                header.push(Op::Text { x: MARGIN, y, size: HEADER_SIZE, text: line });
            }
            header.push(Op::Text {
                x: MARGIN + CONTENT_W - font.width(&page_label, HEADER_SIZE),
                y: HEADER_FIRST_BASELINE,
                size: HEADER_SIZE,
                text: page_label,
            });
            let rule_y = HEADER_FIRST_BASELINE - HEADER_LEADING * (self.header.len().max(1) as f32 - 1.0) - 6.0;
            header.push(Op::Line { x1: MARGIN, x2: MARGIN + CONTENT_W, y: rule_y });
            for op in header.iter().chain(ops) {
                op.draw(&mut c, &mut cids);
            }
            let content = deflate(&c.finish());
            let mut page = pdf.page(*page_id);
            page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H)).parent(tree_id).contents(*content_id);
            page.resources().fonts().pair(Name(b"F1"), type0_id);
            page.finish();
            pdf.stream(*content_id, &content).filter(Filter::FlateDecode);
        }

        cids.write_font(&mut pdf, &font, [type0_id, cid_font_id, descriptor_id, to_unicode_id, cid_to_gid_id, font_file_id]);
        pdf.finish()
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec_zlib(data, 6)
}

enum Op {
    Text { x: f32, y: f32, size: f32, text: String },
    Fill { x: f32, y: f32, w: f32, h: f32, gray: f32 },
    Frame { x: f32, y: f32, w: f32, h: f32 },
    Line { x1: f32, x2: f32, y: f32 },
}

impl Op {
    fn draw(&self, c: &mut Content, cids: &mut Cids) {
        match self {
            Op::Text { text, .. } if text.is_empty() => {}
            Op::Text { x, y, size, text } => {
                let encoded = cids.encode(text);
                c.begin_text();
                c.set_font(Name(b"F1"), *size);
                c.next_line(*x, *y);
                c.show(Str(&encoded));
                c.end_text();
            }
            Op::Fill { x, y, w, h, gray } => {
                c.set_fill_gray(*gray);
                c.rect(*x, *y, *w, *h);
                c.fill_nonzero();
                c.set_fill_gray(0.0);
            }
            Op::Frame { x, y, w, h } => {
                c.set_stroke_gray(RULE_GRAY);
                c.set_line_width(0.4);
                c.rect(*x, *y, *w, *h);
                c.stroke();
            }
            Op::Line { x1, x2, y } => {
                c.set_stroke_gray(RULE_GRAY);
                c.set_line_width(0.5);
                c.move_to(*x1, *y);
                c.line_to(*x2, *y);
                c.stroke();
            }
        }
    }
}

struct Layout<'f> {
    font: &'f Font,
    pages: Vec<Vec<Op>>,
    /// The top of the free space on the current page.
    y: f32,
    /// Where the body starts on each page (below the header).
    top: f32,
}

impl Layout<'_> {
    fn page(&mut self) -> &mut Vec<Op> {
        self.pages.last_mut().expect("at least one page")
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = self.top;
    }

    /// Start a new page unless `h` points fit on this one (or this one is still empty).
    fn need(&mut self, h: f32) {
        if self.y - h < BODY_BOTTOM && self.y < self.top {
            self.new_page();
        }
    }

    /// Lines of text across the full width, breaking pages between lines.
    fn lines(&mut self, lines: &[String], size: f32, leading: f32, before: f32, after: f32) {
        if self.y < self.top {
            self.y -= before;
        }
        for line in lines {
            self.need(leading);
            let y = self.y - self.font.ascent() * size;
            let text = line.clone();
            self.page().push(Op::Text { x: MARGIN, y, size, text });
            self.y -= leading;
        }
        self.y -= after;
    }

    /// The height of a table row segment of `n` lines.
    fn row_height(&self, n: usize) -> f32 {
        2.0 * CELL_PAD_Y + (n.max(1) - 1) as f32 * TABLE_LEADING + (self.font.ascent() - self.font.descent()) * TABLE_SIZE
    }

    /// How many lines of a row fit in `h` points (0 if not even one).
    fn lines_in(&self, h: f32) -> usize {
        let first = self.row_height(1);
        if h < first { 0 } else { 1 + ((h - first) / TABLE_LEADING).floor() as usize }
    }

    /// Draw lines `from..to` of each cell as one row segment at the current position.
    fn row(&mut self, widths: &[f32], cells: &[Vec<String>], from: usize, to: usize, fills: &[Option<f32>]) {
        let h = self.row_height(to - from);
        let top = self.y;
        let ascent = self.font.ascent() * TABLE_SIZE;
        let mut x = MARGIN;
        let mut ops = Vec::new();
        for ((w, lines), fill) in widths.iter().zip(cells).zip(fills) {
            if let Some(gray) = fill {
                ops.push(Op::Fill { x, y: top - h, w: *w, h, gray: *gray });
            }
            ops.push(Op::Frame { x, y: top - h, w: *w, h });
            for (i, line) in lines.iter().enumerate().take(to).skip(from) {
                let y = top - CELL_PAD_Y - ascent - (i - from) as f32 * TABLE_LEADING;
                ops.push(Op::Text { x: x + CELL_PAD_X, y, size: TABLE_SIZE, text: line.clone() });
            }
            x += w;
        }
        self.page().extend(ops);
        self.y -= h;
    }

    /// A table: rows stay whole when they fit on a page, otherwise split between lines; the
    /// header row (if any) is repeated at the top of every page the table reaches.
    fn table(&mut self, columns: &[Column], header: bool, rows: &[Vec<String>]) {
        let total: f32 = columns.iter().map(|c| c.weight).sum();
        let widths: Vec<f32> = columns.iter().map(|c| CONTENT_W * c.weight / total).collect();
        let font = self.font;
        let cell = |w: f32, s: &str| wrap(font, s, TABLE_SIZE, w - 2.0 * CELL_PAD_X);
        let head: Vec<Vec<String>> = widths.iter().zip(columns).map(|(w, c)| cell(*w, &c.title)).collect();
        let head_lines = head.iter().map(Vec::len).max().unwrap_or(1);
        let head_h = if header { self.row_height(head_lines) } else { 0.0 };
        let head_fill = vec![Some(HEADER_FILL); columns.len()];
        let mut body_fill = vec![None; columns.len()];
        if !header {
            body_fill[0] = Some(KEY_FILL);
        }
        let draw_head = |l: &mut Self| {
            if header {
                l.row(&widths, &head, 0, head_lines, &head_fill);
            }
        };
        self.need(head_h + self.row_height(1));
        draw_head(self);
        let fresh_page_lines = self.lines_in(self.top - BODY_BOTTOM - head_h);
        for r in rows {
            let cells: Vec<Vec<String>> =
                widths.iter().enumerate().map(|(i, w)| cell(*w, r.get(i).map(String::as_str).unwrap_or(""))).collect();
            let n = cells.iter().map(Vec::len).max().unwrap_or(1).max(1);
            let mut from = 0;
            while from < n {
                let fit = self.lines_in(self.y - BODY_BOTTOM);
                let rest = n - from;
                if fit >= rest {
                    self.row(&widths, &cells, from, n, &body_fill);
                    break;
                }
                // Move a row that would fit whole on a fresh page; split only one taller than that.
                if fit == 0 || (from == 0 && rest <= fresh_page_lines) {
                    self.new_page();
                    draw_head(self);
                    continue;
                }
                self.row(&widths, &cells, from, from + fit, &body_fill);
                from += fit;
                self.new_page();
                draw_head(self);
            }
        }
        self.y -= 6.0;
    }
}

/// The document's characters, each with its own CID (in order of first use; 0 is .notdef).
#[derive(Default)]
struct Cids {
    map: BTreeMap<char, u16>,
    order: Vec<char>,
}

impl Cids {
    /// Two bytes per character (Identity-H encoding).
    fn encode(&mut self, s: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * s.len());
        for c in s.chars() {
            let cid = match self.map.get(&c) {
                Some(cid) => *cid,
                None if self.order.len() < usize::from(u16::MAX) => {
                    self.order.push(c);
                    let cid = self.order.len() as u16;
                    self.map.insert(c, cid);
                    cid
                }
                None => 0,
            };
            out.extend(cid.to_be_bytes());
        }
        out
    }

    /// The Type 0 font with its CID font, descriptor, /ToUnicode map, CID-to-glyph map and the
    /// subset TrueType font file.
    fn write_font(&self, pdf: &mut Pdf, font: &Font, [type0, cid_font, descriptor, to_unicode, cid_to_gid, file]: [Ref; 6]) {
        let gids: Vec<u16> = self.order.iter().map(|c| font.gid(*c)).collect();
        let mut remapper = subsetter::GlyphRemapper::new();
        for g in &gids {
            remapper.remap(*g);
        }
        // The subset keeps the font small; should it ever fail, embed the whole font instead.
        let (data, new_gid): (Vec<u8>, Box<dyn Fn(u16) -> u16>) = match subsetter::subset(FONT_DATA, 0, &remapper) {
            Ok(data) => (data, Box::new(move |g| remapper.get(g).unwrap_or(0))),
            Err(e) => {
                tracing::warn!(error = %e, "font subsetting failed; embedding the whole font");
                (FONT_DATA.to_vec(), Box::new(|g| g))
            }
        };
        // Subset tag: six capital letters that depend on the glyph set.
        let mut hash: u32 = 2166136261;
        for g in &gids {
            hash = (hash ^ u32::from(*g)).wrapping_mul(16777619);
        }
        let tag: String = (0..6).map(|i| char::from(b'A' + ((hash >> (i * 5)) % 26) as u8)).collect();
        let base = format!("{tag}+{FONT_NAME}");
        let base = Name(base.as_bytes());
        let info = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };

        pdf.type0_font(type0).base_font(base).encoding_predefined(Name(b"Identity-H")).descendant_font(cid_font).to_unicode(to_unicode);

        let mut widths = vec![font.advance_gid(0) * 1000.0];
        widths.extend(gids.iter().map(|g| font.advance_gid(*g) * 1000.0));
        let mut cf = pdf.cid_font(cid_font);
        cf.subtype(CidFontType::Type2).base_font(base).system_info(info).font_descriptor(descriptor).cid_to_gid_map_stream(cid_to_gid);
        cf.widths().consecutive(0, widths);
        cf.finish();

        let per_em = |v: f32| v * 1000.0;
        let bbox = font.face.map(|f| f.global_bounding_box()).map_or(Rect::new(-1000.0, -300.0, 2000.0, 1000.0), |b| {
            let s = 1000.0 / font.upem;
            Rect::new(f32::from(b.x_min) * s, f32::from(b.y_min) * s, f32::from(b.x_max) * s, f32::from(b.y_max) * s)
        });
        let cap = font.face.and_then(|f| f.capital_height()).map_or(0.73, |h| f32::from(h) / font.upem);
        pdf.font_descriptor(descriptor)
            .name(base)
            .flags(FontFlags::SYMBOLIC)
            .bbox(bbox)
            .italic_angle(0.0)
            .ascent(per_em(font.ascent()))
            .descent(per_em(font.descent()))
            .cap_height(per_em(cap))
            .stem_v(80.0)
            .font_file2(file);

        let mut cmap = UnicodeCmap::new(Name(b"Lanyard-UCS"), info);
        for (i, c) in self.order.iter().enumerate() {
            cmap.pair(i as u16 + 1, *c);
        }
        let cmap = cmap.finish();
        pdf.cmap(to_unicode, &deflate(&cmap)).filter(Filter::FlateDecode);

        let mut map = vec![0, 0];
        for g in &gids {
            map.extend(new_gid(*g).to_be_bytes());
        }
        pdf.stream(cid_to_gid, &deflate(&map)).filter(Filter::FlateDecode);

        let len = data.len() as i32;
        pdf.stream(file, &deflate(&data)).filter(Filter::FlateDecode).pair(Name(b"Length1"), len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_font_covers_pupils_names_and_welsh() {
        let font = Font::get();
        assert!(font.face.is_some(), "the embedded font parses");
        for c in "Zoë Siobhán Łukasz Ayşe Nguyễn ŵ ŷ Ŵ Ŷ — – ‘’ “” £ €".chars().filter(|c| *c != ' ') {
            assert_ne!(font.gid(c), 0, "DejaVu Sans has no glyph for {c:?}");
        }
    }

    #[test]
    fn nfc_makes_one_character_of_a_decomposed_letter() {
        assert_eq!(clean("Nguye\u{0302}\u{0303}n\tZoe\u{0308}\r"), "Nguyễn Zoë");
    }

    #[test]
    fn wrapping_keeps_to_the_width_and_breaks_long_words() {
        let font = Font::get();
        let text = "Siobhán told Łukasz — ".repeat(20) + &"f".repeat(300);
        let lines = wrap(&font, &text, 8.0, 200.0);
        assert!(lines.len() > 5);
        assert!(lines.iter().all(|l| font.width(l, 8.0) <= 200.0), "{lines:?}");
        assert_eq!(lines.join(" ").split_whitespace().collect::<String>(), text.split_whitespace().collect::<String>());
        assert_eq!(wrap(&font, "one\n\ntwo", 8.0, 200.0), ["one", "", "two"]);
    }

    #[test]
    fn a_sha256_fits_on_one_line_of_the_evidence_table() {
        // custody.rs gives the SHA-256 column this share of the width: a hash must not wrap.
        let font = Font::get();
        let col = CONTENT_W * super::super::custody::SHA_COLUMN_SHARE - 2.0 * CELL_PAD_X;
        let worst = "d".repeat(64);
        assert!(font.width(&worst, TABLE_SIZE) <= col, "{} > {col}", font.width(&worst, TABLE_SIZE));
    }

    #[test]
    fn a_long_table_breaks_across_pages_with_its_header() {
        let mut d = Document::new("t", &["Case 1".into()]);
        d.title("Title");
        d.table(
            vec![Column::new("Number", 1.0), Column::new("Text", 3.0)],
            (0..200).map(|i| vec![i.to_string(), format!("row {i} — Ayşe")]).collect(),
        );
        let font = Font::get();
        let pages = d.layout(&font);
        assert!(pages.len() >= 3, "{} pages", pages.len());
        for p in &pages {
            let texts: Vec<&str> =
                p.iter().filter_map(|o| if let Op::Text { text, .. } = o { Some(text.as_str()) } else { None }).collect();
            assert!(texts.contains(&"Number") && texts.contains(&"Text"), "the header row on every page");
        }
        // Every row once, in order.
        let rows: Vec<String> = pages
            .iter()
            .flatten()
            .filter_map(|o| if let Op::Text { text, .. } = o { text.strip_prefix("row ").map(str::to_owned) } else { None })
            .collect();
        assert_eq!(rows, (0..200).map(|i| format!("{i} — Ayşe")).collect::<Vec<_>>());
        let pdf = d.render();
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(pdf.len() < 60_000, "the font is subset and the streams compressed: {} bytes", pdf.len());
    }

    #[test]
    fn a_row_taller_than_a_page_is_split() {
        let mut d = Document::new("t", &["Case 1".into()]);
        let long = (0..400).map(|i| format!("line{i}")).collect::<Vec<_>>().join("\n");
        d.table(vec![Column::new("A", 1.0), Column::new("B", 3.0)], vec![vec!["x".into(), long]]);
        let pages = d.layout(&Font::get());
        assert!(pages.len() >= 4);
        let n = pages.iter().flatten().filter(|o| matches!(o, Op::Text { text, .. } if text.starts_with("line"))).count();
        assert_eq!(n, 400);
    }
}
