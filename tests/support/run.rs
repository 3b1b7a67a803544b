//! `sluice run` of one pipeline file, for tests that kill it and start it again: its
//! stderr in a file, waits that fail with that log when the process ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{binary, KillOnDrop};

/// A `sluice run` of one pipeline file, its stderr in a file.
pub struct Run {
    pub process: KillOnDrop,
    pub log: PathBuf,
}

pub fn start(dir: &Path, name: &str, yaml: &str) -> Run {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let log = dir.join(format!("{name}.err"));
    let process = KillOnDrop(
        Command::new(binary())
            .arg("run")
            .arg(&file)
            .args(["--rest-listen", "127.0.0.1:0", "--no-watch"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    Run { process, log }
}

impl Run {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `done` (given the log so far) says so, failing if the process ends.
    #[allow(dead_code)] // not every test file waits on the log
    pub fn wait_for(&mut self, what: &str, timeout_s: u64, done: &mut dyn FnMut(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(timeout_s);
        while !done(&self.log()) {
            let exited = self.process.0.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "waiting for {what}: {exited:?}; sluice run said:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(mut self) {
        self.process.0.kill().unwrap();
        self.process.0.wait().unwrap();
    }
}
