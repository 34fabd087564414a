//! The result of a benchmark run: figures with their goals, the stage timings that name a
//! bottleneck, the machine, and the two renderings (a text table and JSON).

use serde::Serialize;
use std::fmt::Write as _;

/// A goal a figure is reported against (never enforced: the benchmark only reports).
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    /// E.g. `>= 0.9`.
    pub text: String,
    pub met: bool,
}

/// One measured number.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Stable machine-readable name, e.g. `write.put_ops_per_s`.
    pub key: String,
    pub section: String,
    pub label: String,
    pub value: f64,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<Goal>,
}

impl Figure {
    /// The value as printed: cosines to six decimals, other figures to about three digits.
    pub fn value_text(&self) -> String {
        if self.unit == "cosine" {
            format!("{:.6}", self.value)
        } else {
            fmt_num(self.value)
        }
    }
}

/// Where the time went in one measurement (printed when a goal is missed, always in JSON).
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub section: String,
    pub stage: String,
    /// Seconds spent in this stage in total.
    pub seconds: f64,
    /// How many times it ran (batches, calls).
    pub count: u64,
}

/// The machine the benchmark ran on.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_mib: u64,
    pub os: String,
    pub kernel: String,
    /// 1, 5 and 15 minute load averages when the run started (shows a shared machine).
    pub load_at_start: String,
    pub load_at_end: String,
    pub mongodb_server: String,
    pub chroma_server: String,
}

impl Machine {
    /// Reads what Linux says about this machine (fields stay empty elsewhere).
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        let os = std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_mib,
            os,
            kernel,
            load_at_start: loadavg(),
            ..Machine::default()
        }
    }
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    pub tidemark_version: String,
    pub started_at: String,
    pub seconds: f64,
    pub quick: bool,
    pub machine: Machine,
    /// The counts used (backlog sizes, durations).
    pub parameters: serde_json::Value,
    pub figures: Vec<Figure>,
    pub stages: Vec<StageTime>,
    /// Plain-language remarks: bottlenecks, skipped measurements, caveats.
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a figure without a goal.
    pub fn add(&mut self, key: &str, label: &str, value: f64, unit: &str) {
        self.push(key, label, value, unit, None);
    }

    /// Adds a figure that must be at least `min`.
    pub fn add_min(&mut self, key: &str, label: &str, value: f64, unit: &str, min: f64) {
        let goal = Goal {
            text: format!(">= {}", fmt_goal(min)),
            met: value >= min,
        };
        self.push(key, label, value, unit, Some(goal));
    }

    /// Adds a figure that must stay below `max`.
    pub fn add_max(&mut self, key: &str, label: &str, value: f64, unit: &str, max: f64) {
        let goal = Goal {
            text: format!("< {}", fmt_goal(max)),
            met: value < max,
        };
        self.push(key, label, value, unit, Some(goal));
    }

    fn push(&mut self, key: &str, label: &str, value: f64, unit: &str, goal: Option<Goal>) {
        let section = key.split('.').next().unwrap_or(key).to_string();
        self.figures.push(Figure {
            key: key.to_string(),
            section,
            label: label.to_string(),
            value,
            unit: unit.to_string(),
            goal,
        });
    }

    pub fn stage(&mut self, section: &str, stage: &str, seconds: f64, count: u64) {
        self.stages.push(StageTime {
            section: section.to_string(),
            stage: stage.to_string(),
            seconds,
            count,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    /// The value of a figure by key.
    pub fn value(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }

    /// The JSON file: the full report plus a flat `values` map `{key: number}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let values: serde_json::Map<String, serde_json::Value> = self
            .figures
            .iter()
            .map(|f| (f.key.clone(), serde_json::json!(f.value)))
            .collect();
        v["values"] = serde_json::Value::Object(values);
        v
    }

    /// The text table, then the stage times of sections with a missed goal, then the notes.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "machine: {} ({} cores, {} MiB), {}, load {} -> {}",
            m.cpu, m.cores, m.memory_mib, m.os, m.load_at_start, m.load_at_end
        );
        let _ = writeln!(
            out,
            "servers: MongoDB-compatible {} (buildInfo), Chroma API {} (/api/v2/version)",
            m.mongodb_server, m.chroma_server
        );
        let lw = self
            .figures
            .iter()
            .map(|f| f.label.len())
            .max()
            .unwrap_or(5)
            .max(6);
        let _ = writeln!(
            out,
            "\n{:<8} {:<lw$} {:>12} {:<8} goal",
            "section", "figure", "value", "unit"
        );
        let _ = writeln!(out, "{}", "-".repeat(8 + lw + 12 + 8 + 20));
        for f in &self.figures {
            let goal = match &f.goal {
                Some(g) => format!("{} {}", g.text, if g.met { "ok" } else { "MISSED" }),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "{:<8} {:<lw$} {:>12} {:<8} {}",
                f.section,
                f.label,
                f.value_text(),
                f.unit,
                goal
            );
        }
        let missed: Vec<&str> = self
            .figures
            .iter()
            .filter(|f| f.goal.as_ref().is_some_and(|g| !g.met))
            .map(|f| f.section.as_str())
            .collect();
        let stages: Vec<&StageTime> = self
            .stages
            .iter()
            .filter(|s| missed.contains(&s.section.as_str()))
            .collect();
        if !stages.is_empty() {
            let _ = writeln!(out, "\ntime per stage where a goal was missed:");
            for s in stages {
                let per = if s.count > 0 {
                    s.seconds / s.count as f64 * 1000.0
                } else {
                    0.0
                };
                let _ = writeln!(
                    out,
                    "  {:<8} {:<34} {:>9.2} s over {:>7} calls ({:.2} ms each)",
                    s.section, s.stage, s.seconds, s.count, per
                );
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(out, "  - {n}");
            }
        }
        let _ = writeln!(out, "\ntotal {:.0} s", self.seconds);
        out
    }
}

/// A goal's number as written by hand: `0.9`, `1`, `64`.
fn fmt_goal(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A number with about three significant digits, without exponent noise.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_and_json_values() {
        let mut r = Report::default();
        r.add_min("write.ratio", "put / raw", 0.8, "x", 0.9);
        r.add_max("lag.p99_s", "p99", 0.2, "s", 1.0);
        r.add("write.put", "put", 400.0, "ops/s");
        r.stage("write", "commit", 1.5, 10);
        let j = r.to_json();
        assert_eq!(j["values"]["write.put"], 400.0);
        assert_eq!(j["figures"][0]["goal"]["met"], false);
        assert_eq!(j["figures"][1]["goal"]["met"], true);
        let t = r.table();
        assert!(t.contains(">= 0.9 MISSED"), "{t}");
        assert!(t.contains("< 1 ok"), "{t}");
        assert!(
            t.contains("commit"),
            "stage of a missed section is printed: {t}"
        );
    }

    #[test]
    fn number_format() {
        assert_eq!(fmt_num(1234.56), "1235");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(0.01234), "0.012");
        assert_eq!(fmt_goal(0.9999), "0.9999");
        assert_eq!(fmt_goal(0.9), "0.9");
        assert_eq!(fmt_goal(64.0), "64");
    }
}
