//! Plain text tables for the commands that list things: a header row, then a
//! row per item, each column as wide as its widest cell.

pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = headers.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_on_the_widest_cell() {
        let rows = vec![
            vec!["ci".to_owned(), "true".to_owned()],
            vec!["deployments".to_owned(), "false".to_owned()],
        ];
        assert_eq!(
            render(&["NAME", "ENABLED"], &rows),
            "NAME         ENABLED\nci           true\ndeployments  false\n"
        );
    }
}
