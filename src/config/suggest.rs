//! "Did you mean …?" hints: the closest candidate by edit distance.

/// Levenshtein distance between two strings, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `Some("did you mean `x`?")` when one candidate is close enough to be a likely typo.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let limit = (wrong.chars().count() / 3).max(1);
    candidates.into_iter().map(|c| (distance(wrong, c), c)).filter(|&(d, _)| d <= limit).min().map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name_within_a_third_of_its_length() {
        let names = ["linux-default", "windows-default", "web-server"];
        assert_eq!(did_you_mean("linux-defualt", names).as_deref(), Some("did you mean `linux-default`?"));
        assert_eq!(did_you_mean("databse", ["database"]).as_deref(), Some("did you mean `database`?"));
        assert_eq!(did_you_mean("something-else", names), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
