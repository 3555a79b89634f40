//! The profile loader under random damage: thousands of mutations of the
//! shipped profiles (bytes cut, lines swapped or repeated, YAML punctuation
//! and long or odd values put in). None may panic; every refusal is a report
//! whose every line names the file, a line and a column inside the text; and
//! a refused build writes nothing.

mod common;

use std::fs;

use common::*;

/// xorshift64*: deterministic, so a failure can be replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PIECES: &[&str] = &[
    ":",
    "- ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "\t",
    "  ",
    "\n",
    "&a ",
    "*a",
    "!!str ",
    "<<: *a",
    "#",
    "|",
    ">",
    "~",
    "null",
    "0x1F",
    "1e400",
    "-1",
    "999999999999999999999",
    "..",
    "/",
    "\u{feff}",
    "\u{0}",
    "é",
    "\r\n",
    "---\n",
    "? ",
    "%YAML 1.2\n",
];

fn mutate(text: &str, rng: &mut Rng) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(3) {
        let n = lines.len().max(1);
        match rng.below(7) {
            0 => {
                let i = rng.below(n);
                if i < lines.len() {
                    lines.remove(i);
                }
            }
            1 => {
                let i = rng.below(n);
                let line = lines.get(i).cloned().unwrap_or_default();
                lines.insert(rng.below(n), line);
            }
            2 => {
                let (a, b) = (rng.below(n), rng.below(n));
                if a < lines.len() && b < lines.len() {
                    lines.swap(a, b);
                }
            }
            3 | 4 => {
                let i = rng.below(n);
                if let Some(line) = lines.get_mut(i) {
                    let mut chars: Vec<char> = line.chars().collect();
                    let at = rng.below(chars.len() + 1);
                    let piece = PIECES[rng.below(PIECES.len())];
                    for (k, c) in piece.chars().enumerate() {
                        chars.insert(at + k, c);
                    }
                    *line = chars.into_iter().collect();
                }
            }
            5 => {
                // A value replaced by something long or odd.
                let i = rng.below(n);
                if let Some(line) = lines.get_mut(i) {
                    if let Some(colon) = line.find(": ") {
                        let value = match rng.below(4) {
                            0 => "x".repeat(10_000),
                            1 => "[".repeat(200),
                            2 => "\"\\u0000\"".to_string(),
                            _ => "{a: [1, {b: 2}]}".to_string(),
                        };
                        line.replace_range(colon + 2.., &value);
                    }
                }
            }
            _ => {
                // Indentation moved.
                let i = rng.below(n);
                if let Some(line) = lines.get_mut(i) {
                    if rng.below(2) == 0 {
                        line.insert_str(0, "  ");
                    } else if line.starts_with(' ') {
                        line.remove(0);
                    }
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

/// Every line of a refusal starts with `file:LINE:COL: ` (inside the text)
/// or is a hint.
fn assert_positioned(file: &str, text: &str, report: &str, seed: u64) {
    let line_count = text.lines().count() + 1;
    for line in report.lines() {
        if line.starts_with("  hint: ") || line.ends_with(": nothing was written") {
            continue;
        }
        let rest = line
            .strip_prefix(&format!("{file}:"))
            .unwrap_or_else(|| panic!("seed {seed}: a line without the file: {line:?}"));
        let mut parts = rest.splitn(3, ':');
        let l: usize = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let c: usize = parts.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        assert!(
            (1..=line_count).contains(&l) && c >= 1,
            "seed {seed}: no usable position in {line:?}"
        );
    }
}

#[test]
fn damaged_profiles_never_panic_and_every_refusal_has_a_position() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut refused = 0;
    for profile in shipped_profiles() {
        let original = fs::read_to_string(&profile).unwrap();
        for round in 0..3000 {
            let seed = rng.next();
            let text = mutate(&original, &mut Rng(seed | 1));
            let result = std::panic::catch_unwind(|| nodeimg::load_profile_str("p.yaml", &text));
            let result = result.unwrap_or_else(|_| {
                panic!(
                    "seed {seed} (round {round} of {}): the loader panicked on:\n{text}",
                    profile.display()
                )
            });
            if let Err(e) = result {
                refused += 1;
                let report = e
                    .downcast_ref::<nodeimg::Report>()
                    .unwrap_or_else(|| panic!("seed {seed}: not a positioned report: {e:#}"));
                assert_positioned("p.yaml", &text, &report.to_string(), seed);
            }
        }
    }
    assert!(
        refused > 500,
        "the mutations should break most profiles: {refused}"
    );
}

/// Through the binary: a damaged profile is refused and nothing is written.
#[test]
fn a_refused_damaged_profile_writes_nothing() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let original = shipped_profile("homelab.yaml");
    let mut checked = 0;
    while checked < 25 {
        let text = mutate(&original, &mut rng);
        let s = Scratch::with_profile(&text);
        let r = s.run(&["build", "profile.yaml", "-o", "out"]);
        if r.ok() {
            continue;
        }
        checked += 1;
        assert_eq!(r.code(), Some(1), "{}", r.stderr());
        assert_eq!(
            s.listing(),
            vec!["profile.yaml".to_string()],
            "{}",
            r.stderr()
        );
        assert_positioned("profile.yaml", &text, &r.stderr(), 0);
    }
}
