//! The set of HTTP statuses that count as healthy: `200-399`, `200,204`, `200-299,304`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSet(Vec<(u16, u16)>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a status set: write codes and ranges from 100 to 599, like 200-399 or 200,204")]
pub struct StatusSetError(String);

impl StatusSet {
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

impl Default for StatusSet {
    /// 200-399, as curl -f and most load balancers treat redirects as healthy.
    fn default() -> Self {
        StatusSet(vec![(200, 399)])
    }
}

impl FromStr for StatusSet {
    type Err = StatusSetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || StatusSetError(s.to_string());
        let code = |x: &str| x.trim().parse::<u16>().ok().filter(|c| (100..=599).contains(c)).ok_or_else(err);
        let mut out = Vec::new();
        for part in s.split(',') {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => (code(part)?, code(part)?),
            };
            if lo > hi {
                return Err(err());
            }
            out.push((lo, hi));
        }
        Ok(StatusSet(out))
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") }).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_and_lists() {
        let s: StatusSet = "200-299, 304".parse().unwrap();
        assert!(s.contains(200) && s.contains(299) && s.contains(304));
        assert!(!s.contains(300) && !s.contains(503));
        assert_eq!(s.to_string(), "200-299,304");
        assert!(StatusSet::default().contains(302));
        for bad in ["", "abc", "200-", "399-200", "99", "600", "200,,204"] {
            assert!(bad.parse::<StatusSet>().is_err(), "{bad:?} should be rejected");
        }
    }
}
