//! What the client subcommands share: the global flags, the keystore argument and passphrase,
//! an open keystore with its server directory, the async runtime, output and progress.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use roam_client::directory::ServerDirectory;
use roam_client::keystore::{KdfParams, Keystore};
use roam_identity_core::ServerName;
use serde_json::Value;
use url::Url;
use zeroize::Zeroizing;

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
}

impl GlobalArgs {
    /// The overrides as a map.
    pub fn overrides(&self) -> BTreeMap<ServerName, Url> {
        self.federation_override.iter().cloned().collect()
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

fn default_keystore() -> PathBuf {
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
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
    match base {
        Some(b) => b.join("roam"),
        None => PathBuf::from(".roam-cache"),
    }
}

/// The passphrase: `ROAM_PASSPHRASE`, else asked on the terminal (twice when `confirm`).
pub fn passphrase(confirm: bool, what: &str) -> anyhow::Result<Zeroizing<String>> {
    if let Some(p) = std::env::var_os("ROAM_PASSPHRASE") {
        let p = p
            .into_string()
            .map_err(|_| anyhow::anyhow!("ROAM_PASSPHRASE is not valid UTF-8"))?;
        anyhow::ensure!(!p.is_empty(), "ROAM_PASSPHRASE is empty; set a passphrase");
        return Ok(Zeroizing::new(p));
    }
    let first = Zeroizing::new(
        rpassword::prompt_password(format!("Passphrase for {what}: ")).map_err(|e| {
            anyhow::anyhow!(
                "cannot ask for the passphrase ({e}); set ROAM_PASSPHRASE or run roam in a terminal"
            )
        })?,
    );
    anyhow::ensure!(!first.is_empty(), "the passphrase must not be empty");
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat the passphrase: ")
                .map_err(|e| anyhow::anyhow!("cannot read the passphrase: {e}"))?,
        );
        anyhow::ensure!(
            *first == *again,
            "the two passphrases differ; nothing was written"
        );
    }
    Ok(first)
}

/// An open keystore with its passphrase and server directory.
pub struct Session {
    pub path: PathBuf,
    pass: Zeroizing<String>,
    pub ks: Keystore,
    pub dir: ServerDirectory,
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
            return Err(roam_client::keystore::KeystoreError::Missing {
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
    pub fn save_keystore(
        path: &Path,
        pass: &str,
        ks: &Keystore,
    ) -> Result<(), roam_client::keystore::KeystoreError> {
        ks.save(path, pass, KdfParams::from_env())
    }

    /// The DID.
    pub fn did(&self) -> anyhow::Result<roam_identity_core::Did> {
        Ok(self.ks.did()?)
    }
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
