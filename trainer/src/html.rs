//! Pieces of the self-contained HTML pages (`trainer report`, `trainer search-report`):
//! escaping, embedded pictures, tables from CSV files, text blocks. A leaf: it uses nothing of
//! this crate.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An `<img>` with the PNG embedded, or nothing when the file is missing.
pub fn picture(path: &Path, caption: &str) -> Result<String> {
    if !path.exists() {
        return Ok(String::new());
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!(
        "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>\n",
        escape(caption),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// A CSV file as an HTML table (numbers shortened to 4 decimals), read with the `csv` crate so
/// that quoted cells holding commas stay one cell.
pub fn csv_table(path: &Path) -> Result<String> {
    if !path.exists() {
        return Ok(String::new());
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let cell = |c: &str| match c.parse::<f64>() {
        Ok(v) if c.contains('.') => format!("{v:.4}"),
        _ => escape(c),
    };
    let mut html = String::from("<table><thead><tr>");
    for h in reader
        .headers()
        .with_context(|| format!("{} has no header row", path.display()))?
    {
        html.push_str(&format!("<th>{}</th>", escape(h)));
    }
    html.push_str("</tr></thead><tbody>\n");
    for row in reader.records() {
        let row = row.with_context(|| format!("{} is not valid CSV", path.display()))?;
        html.push_str("<tr>");
        for c in &row {
            html.push_str(&format!("<td>{}</td>", cell(c)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</tbody></table>\n");
    Ok(html)
}

/// A text file in a `<pre>`, or nothing when missing.
pub fn text_block(path: &Path) -> Result<String> {
    if !path.exists() {
        return Ok(String::new());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("<pre>{}</pre>\n", escape(text.trim_end())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_file_becomes_a_table_with_quoted_commas_kept_in_their_cell() {
        let dir = std::env::temp_dir().join(format!("cifar-burn-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("search.csv");
        std::fs::write(
            &path,
            "trial,fc,accuracy\n1,\"512,512\",0.812345\n2,<b>,0.5\n",
        )
        .unwrap();
        let table = csv_table(&path).unwrap();
        assert!(table.contains("<th>fc</th>"), "{table}");
        assert!(table.contains("<td>512,512</td><td>0.8123</td>"), "{table}");
        assert!(table.contains("<td>&lt;b&gt;</td>"), "{table}");
        assert_eq!(table.matches("<tr>").count(), 3, "{table}");
        assert_eq!(csv_table(&dir.join("missing.csv")).unwrap(), "");
        assert_eq!(picture(&dir.join("missing.png"), "x").unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
