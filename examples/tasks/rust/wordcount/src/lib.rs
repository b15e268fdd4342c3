//! wordcount: the words of the input as a JSON object, most frequent first. A word is a run
//! of letters, digits, apostrophes or non-ASCII bytes, compared case-insensitively (ASCII):
//! the same rules as the C version.

use std::collections::BTreeMap;

wit_bindgen::generate!({ world: "task", path: "../../../../wit" });

struct WordCount;

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'\'' || b >= 0x80
}

impl Guest for WordCount {
    fn run(input: Vec<u8>) -> Result<Vec<u8>, String> {
        let lower = input.to_ascii_lowercase();
        let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
        for word in lower.split(|b| !is_word_byte(*b)).filter(|w| !w.is_empty()) {
            *counts.entry(word).or_default() += 1;
        }
        let mut words: Vec<(&[u8], usize)> = counts.into_iter().collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut out = b"{".to_vec();
        for (i, (word, count)) in words.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(word);
            out.extend_from_slice(format!("\":{count}").as_bytes());
        }
        out.push(b'}');
        Ok(out)
    }
}

export!(WordCount);
