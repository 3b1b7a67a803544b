//! `sluice plugins list`: what the plugin folders hold, and what failed to load and why.

use anyhow::Result;
use sluice_worker::plugins::{load_dirs, plugin_dirs, plugin_path_in, PLUGIN_PATH_ENV};

use crate::cli::PluginsListArgs;

pub fn list(args: PluginsListArgs) -> Result<()> {
    let mut from_args = args.plugin_path.clone();
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file)?;
        let env = |name: &str| std::env::var(name).ok();
        from_args.extend(plugin_path_in(&text, &env));
    }
    let dirs = plugin_dirs(&from_args, std::env::var(PLUGIN_PATH_ENV).ok());
    if dirs.is_empty() {
        println!("no plugin folders: pass --plugin-path DIR, --file PIPELINE.yaml, or set {PLUGIN_PATH_ENV}");
        return Ok(());
    }
    // Built-in types first, so that a plugin claiming one is reported as the clash it is.
    let mut registry = crate::run::builtin_connectors()?;
    let report = load_dirs(&dirs, &mut registry);
    for p in &report.loaded {
        println!("{} {} ({})", p.name, p.version, p.path.display());
        for c in &p.connectors {
            println!("  {} `{}`: {}", c.kind, c.name, c.description);
            for line in c.config.describe().lines() {
                println!("    {line}");
            }
        }
    }
    for e in &report.failed {
        println!("NOT LOADED: {e}");
    }
    if report.loaded.is_empty() && report.failed.is_empty() {
        let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        println!("no plugin libraries in {}", shown.join(", "));
    }
    Ok(())
}
