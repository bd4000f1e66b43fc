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

/// Splits `source` at `---` document markers (a `...` end marker is blanked).
/// Documents holding only blank lines and comments are skipped.
pub(crate) fn documents(source: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut offset = 0u64;
    for (n, line) in source.lines().enumerate() {
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_start {
            push(&mut docs, std::mem::take(&mut current), offset);
            offset = n as u64;
            // Keep any content after the marker, at its column.
            current.push_str("   ");
            current.push_str(&line[3..]);
            current.push('\n');
        } else if line == "..." {
            current.push('\n');
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push(&mut docs, current, offset);
    docs
}

fn push(docs: &mut Vec<Document>, text: String, line_offset: u64) {
    let empty = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if !empty {
        docs.push(Document { text, line_offset });
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
    (!key.is_empty() && !key.contains(' ')).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_keeps_offsets() {
        let src =
            "# leading comment\n---\nkind: A\n---\n# only a comment\n---\nkind: B\nx: 1\n...\n";
        let docs = documents(src);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line_offset, 1);
        assert_eq!(docs[0].text.lines().nth(1), Some("kind: A"));
        assert_eq!(docs[1].line_offset, 5);
        assert_eq!(docs[1].text.lines().nth(2), Some("x: 1"));
    }

    #[test]
    fn first_document_without_marker() {
        let docs = documents("kind: A\n---\nkind: B\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].line_offset, 0);
        assert_eq!(docs[1].line_offset, 1);
    }

    #[test]
    fn keys_from_lines() {
        let text = "spec:\n  - weight: x\n  \"host\": y\n";
        assert_eq!(key_at(text, 2), Some("weight"));
        assert_eq!(key_at(text, 3), Some("host"));
        assert_eq!(key_at(text, 9), None);
    }
}
