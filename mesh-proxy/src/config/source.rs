//! Splitting a multi-document YAML file into documents, keeping line numbers.
//!
//! Each document is parsed on its own so that its kind picks the schema; the
//! document keeps its starting line so positions stay those of the file.

/// One YAML document of a file.
#[derive(Debug)]
pub(crate) struct Document {
    /// The document's text; separator lines are blanked, not removed.
    pub(crate) text: String,
    /// Lines before the document's first line in the file.
    pub(crate) line_offset: u64,
}

/// Splits `source` at `---` document markers (a `...` end marker is blanked),
/// lazily: a file of a million tiny documents costs one document at a time.
/// Documents holding only blank lines and comments are skipped. Line breaks
/// are YAML's: LF, CRLF or a lone CR; each document's lines end with LF.
pub(crate) fn documents(source: &str) -> Documents<'_> {
    Documents {
        rest: source,
        line: 0,
        offset: 0,
        current: String::new(),
        done: false,
    }
}

/// The iterator of [`documents`].
pub(crate) struct Documents<'a> {
    rest: &'a str,
    /// The number of the next line, from 0.
    line: u64,
    /// The first line of the document being gathered.
    offset: u64,
    current: String,
    done: bool,
}

impl<'a> Documents<'a> {
    /// The next line without its line break.
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if self.rest[i..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                (&self.rest[..i], &self.rest[i + skip..])
            }
            None => (self.rest, ""),
        };
        self.rest = rest;
        self.line += 1;
        Some(line)
    }

    /// Ends the document being gathered; the new one starts at `offset`.
    fn take(&mut self, offset: u64) -> Option<Document> {
        let text = std::mem::take(&mut self.current);
        let line_offset = std::mem::replace(&mut self.offset, offset);
        let empty = text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        (!empty).then_some(Document { text, line_offset })
    }
}

impl Iterator for Documents<'_> {
    type Item = Document;

    fn next(&mut self) -> Option<Document> {
        while !self.done {
            let n = self.line;
            let Some(line) = self.next_line() else {
                self.done = true;
                return self.take(0);
            };
            let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
            if is_start {
                // Keep any content after the marker, at its column.
                let after = format!("   {}\n", &line[3..]);
                let doc = self.take(n);
                self.current = after;
                if doc.is_some() {
                    return doc;
                }
            } else if line == "..." {
                self.current.push('\n');
            } else {
                self.current.push_str(line);
                self.current.push('\n');
            }
        }
        None
    }
}

/// The key on line `line` (from 1) of `text`, for naming the field of an
/// error whose message does not: `  weight: x` gives `weight`.
pub(crate) fn key_at(text: &str, line: u64) -> Option<&str> {
    let l = text
        .lines()
        .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
    let l = l.trim_start().trim_start_matches("- ").trim_start();
    let (key, _) = l.split_once(':')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && key.len() <= 128 && !key.contains(' ')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_keeps_offsets() {
        let src =
            "# leading comment\n---\nkind: A\n---\n# only a comment\n---\nkind: B\nx: 1\n...\n";
        let docs: Vec<Document> = documents(src).collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line_offset, 1);
        assert_eq!(docs[0].text.lines().nth(1), Some("kind: A"));
        assert_eq!(docs[1].line_offset, 5);
        assert_eq!(docs[1].text.lines().nth(2), Some("x: 1"));
    }

    #[test]
    fn first_document_without_marker() {
        let docs: Vec<Document> = documents("kind: A\n---\nkind: B\n").collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line_offset, 0);
        assert_eq!(docs[1].line_offset, 1);
    }

    #[test]
    fn crlf_and_lone_cr_end_lines() {
        let docs: Vec<Document> = documents("kind: A\r\n---\r\nkind: B\rx: 1\r").collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].text, "kind: A\n");
        assert_eq!(docs[1].line_offset, 1);
        assert_eq!(docs[1].text, "   \nkind: B\nx: 1\n");
    }

    #[test]
    fn keys_from_lines() {
        let text = "spec:\n  - weight: x\n  \"host\": y\n";
        assert_eq!(key_at(text, 2), Some("weight"));
        assert_eq!(key_at(text, 3), Some("host"));
        assert_eq!(key_at(text, 9), None);
    }
}
