//! What the client subcommands share: the global flags (overrides, the resolver cache), the
//! keystore argument and passphrase, the recovery phrase prompt, an open keystore with its
//! server directory and the local cache refresh, the async runtime, output and progress.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use roam_client::directory::ServerDirectory;
use roam_client::keystore::{KdfParams, Keystore, KeystoreError};
use roam_client::local_cache;
use roam_identity_core::{Did, ServerName};
use roam_resolver::{CacheStore, ResolverConfig};
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

use super::exit::CliError;

/// Flags every command accepts (clap-global: before or after the subcommand).
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Reach server NAME at URL instead of discovering it, e.g. a.example=http://127.0.0.1:8081
    /// (repeatable). Also trusts URL as a fetch target for resolution.
    #[arg(
        long = "federation-override",
        value_name = "NAME=URL",
        global = true,
        value_parser = parse_override
    )]
    pub federation_override: Vec<(ServerName, Url)>,
    /// Allow resolution to fetch from loopback, private and link-local addresses (off by
    /// default, so that names chosen by strangers cannot reach into your network).
    #[arg(long, global = true, env = "ROAM_ALLOW_PRIVATE_FETCH")]
    pub allow_private_fetch: bool,
    /// Directory of the resolver cache: what `roam resolve` answers from and `roam lan serve`
    /// shares; commands that change the account store their verified result in it
    /// [default: ~/.cache/roam].
    #[arg(long, value_name = "DIR", global = true, env = "ROAM_CACHE")]
    pub cache: Option<PathBuf>,
}

impl GlobalArgs {
    /// The overrides as a map.
    pub fn overrides(&self) -> BTreeMap<ServerName, Url> {
        self.federation_override.iter().cloned().collect()
    }

    /// The resolver settings these flags ask for (the same for resolving and for keeping the
    /// cache current, so the cache holds only what `roam resolve` would have stored).
    pub fn resolver_config(&self) -> ResolverConfig {
        ResolverConfig {
            overrides: self.overrides(),
            allow_private: self.allow_private_fetch,
            ..ResolverConfig::default()
        }
    }

    /// The resolver cache file.
    pub fn cache_file(&self) -> PathBuf {
        local_cache::cache_file(&self.cache.clone().unwrap_or_else(default_cache_dir))
    }

    /// Opens (or creates) the resolver cache.
    pub fn cache_store(&self) -> anyhow::Result<CacheStore> {
        let path = self.cache_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the cache directory {}", dir.display()))?;
        }
        CacheStore::open(&path).with_context(|| {
            format!(
                "opening the resolver cache {} (is another roam, e.g. `roam lan serve`, using it?)",
                path.display()
            )
        })
    }
}

fn parse_override(s: &str) -> Result<(ServerName, Url), String> {
    roam_resolver::discovery::parse_override(s).map_err(|e| e.to_string())
}

/// Parses a homeserver URL given on the command line (`http(s)://host[:port]`).
pub fn parse_url(s: &str) -> Result<Url, String> {
    roam_resolver::discovery::parse_base_url(s).map_err(|e| e.to_string())
}

/// The keystore file argument.
#[derive(Debug, Clone, Args)]
pub struct KeystoreArg {
    /// The encrypted keystore file.
    #[arg(long, value_name = "FILE", env = "ROAM_KEYSTORE", default_value_os_t = default_keystore())]
    pub keystore: PathBuf,
}

pub fn default_keystore() -> PathBuf {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    match base {
        Some(b) => b.join("roam").join("keystore.json"),
        None => PathBuf::from("roam-keystore.json"),
    }
}

/// The default recovery file of a keystore: `<keystore>.recovery.json`.
pub fn default_recovery(keystore: &Path) -> PathBuf {
    let mut s = keystore.as_os_str().to_owned();
    s.push(".recovery.json");
    PathBuf::from(s)
}

/// The default resolver cache directory.
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    match base {
        Some(b) => b.join("roam"),
        None => PathBuf::from(".roam-cache"),
    }
}

/// The passphrase: `ROAM_PASSPHRASE`, else asked on the terminal (twice when `confirm`).
pub fn passphrase(confirm: bool, what: &str) -> Result<Zeroizing<String>, CliError> {
    let refuse = |m: &str| CliError::Passphrase(m.to_owned());
    if let Some(p) = std::env::var_os("ROAM_PASSPHRASE") {
        let p = p
            .into_string()
            .map_err(|_| refuse("ROAM_PASSPHRASE is not valid UTF-8"))?;
        if p.is_empty() {
            return Err(refuse("ROAM_PASSPHRASE is empty; set a passphrase"));
        }
        return Ok(Zeroizing::new(p));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(format!("Passphrase for {what}: ")).map_err(|e| {
            refuse(&format!(
                "cannot ask for the passphrase ({e}); set ROAM_PASSPHRASE or run roam in a terminal"
            ))
        })?,
    );
    if first.is_empty() {
        return Err(refuse("the passphrase must not be empty"));
    }
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the passphrase: ")
                .map_err(|e| refuse(&format!("cannot read the passphrase: {e}")))?,
        );
        if *first != *again {
            return Err(refuse("the two passphrases differ; nothing was written"));
        }
    }
    Ok(first)
}

/// An open keystore with its passphrase and server directory.
pub struct Session {
    pub path: PathBuf,
    pass: Zeroizing<String>,
    pub ks: Keystore,
    pub dir: ServerDirectory,
    global: GlobalArgs,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Opens and decrypts the keystore.
    pub fn open(arg: &KeystoreArg, global: &GlobalArgs) -> anyhow::Result<Self> {
        let path = arg.keystore.clone();
        if !path.exists() {
            // Ask for no passphrase when there is nothing to open.
            return Err(KeystoreError::Missing {
                path: path.display().to_string(),
            }
            .into());
        }
        let pass = passphrase(false, &path.display().to_string())?;
        let spinner = Progress::spinner("decrypting the keystore");
        let ks = Keystore::load(&path, &pass)?;
        spinner.finish();
        let dir = ServerDirectory::new(global.overrides(), ks.public.server_urls.clone());
        Ok(Self {
            path,
            pass,
            ks,
            dir,
            global: global.clone(),
        })
    }

    /// The passphrase (to seal a recovery file with the same one).
    pub fn pass(&self) -> &str {
        &self.pass
    }

    /// Encrypts and writes the keystore (with the server URLs learned meanwhile).
    pub fn save(&mut self) -> anyhow::Result<()> {
        self.ks.public.server_urls = self.dir.known().clone();
        self.ks
            .save(&self.path, &self.pass, KdfParams::from_env())
            .with_context(|| format!("saving {}", self.path.display()))
    }

    /// Saves a keystore value (for callbacks that hold the keystore separately).
    pub fn save_keystore(path: &Path, pass: &str, ks: &Keystore) -> Result<(), KeystoreError> {
        ks.save(path, pass, KdfParams::from_env())
    }

    /// The DID.
    pub fn did(&self) -> anyhow::Result<Did> {
        Ok(self.ks.did()?)
    }

    /// Stores the account as a resolver now verifies it in the local resolver cache, so
    /// `roam resolve` shows this command's change at once. A failure is a warning: the change
    /// itself is done, and the cache catches up when its answer expires.
    pub async fn refresh_cache(&self) {
        let servers =
            match roam_client::account::local_log(&self.ks, roam_client::account::now_ms()) {
                Ok(v) => v.state.servers,
                Err(_) => Vec::new(),
            };
        let Ok(did) = self.ks.did() else { return };
        let file = self.global.cache_file();
        let config = self.global.resolver_config();
        if let Err(e) = local_cache::refresh(&file, config, &did, &servers).await {
            eprintln!("note: the local resolver cache was not updated: {e}");
        }
    }
}

/// Reads the recovery phrase: at a hidden prompt when standard input is a terminal, else
/// from standard input (never from the command line, where other users and the shell
/// history would see it).
pub fn read_phrase() -> anyhow::Result<Zeroizing<String>> {
    read_hidden("Recovery phrase (24 words, not shown): ")
}

/// Reads a Matrix secret-storage recovery key the same way (a hidden prompt, else standard
/// input; never a flag value) and decodes it.
pub fn read_recovery_key() -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = read_hidden("Secret storage recovery key (not shown): ")?;
    Ok(roam_client::secret_storage::parse_recovery_key(&text)?)
}

fn read_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if std::io::stdin().is_terminal() {
        let text =
            rpassword::prompt_password(prompt).map_err(|e| CliError::PhraseInput(e.to_string()))?;
        return Ok(Zeroizing::new(text));
    }
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
        .map_err(|e| CliError::PhraseInput(e.to_string()))?;
    Ok(text)
}

/// Shows a recovery phrase once, numbered, on stderr, with what it is worth.
pub fn show_phrase(phrase: &str) {
    eprintln!("Recovery phrase (write these 24 words down, in order, on paper):");
    let words: Vec<&str> = phrase.split(' ').collect();
    for (row, chunk) in words.chunks(6).enumerate() {
        let line: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{:>2}. {w:<9}", row * 6 + i + 1))
            .collect();
        eprintln!("  {}", line.join(" ").trim_end());
    }
    eprintln!("{PHRASE_WARNING}");
}

/// What a recovery phrase is worth, said wherever one is shown.
pub const PHRASE_WARNING: &str =
    "WARNING: the recovery phrase is not encrypted: anyone who reads it can take over
the account, without the passphrase. It is shown only now. Keep it offline, never next to
the keystore; use it with `roam recover --phrase` or `roam rotate --phrase`.";

/// Names joined by ", " (servers, user IDs, devices).
pub fn joined<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().collect::<Vec<_>>().join(", ")
}

/// A runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Prints a JSON value, pretty.
pub fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A progress bar or spinner on stderr, shown only when stderr is a terminal.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A spinner with a message.
    pub fn spinner(msg: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let pb = ProgressBar::new_spinner();
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        Self(Some(pb))
    }

    /// A bar of `len` steps.
    pub fn bar(len: u64, msg: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let pb = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:20}] {pos}/{len} {msg}") {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message(msg.to_owned());
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        Self(Some(pb))
    }

    /// Advances by one and changes the message.
    pub fn step(&self, msg: &str) {
        if let Some(pb) = &self.0 {
            pb.inc(1);
            pb.set_message(msg.to_owned());
        }
    }

    /// Prints a line above the bar (or plainly, without a bar).
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(pb) => pb.println(line),
            None => println!("{line}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Resolves on Ctrl-C or SIGTERM: how `roam serve` and `roam lan serve` are asked to stop.
#[cfg(feature = "serve")]
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
