//! The `lanyard` command line: `serve`, `init`, `admin ...`, `audit verify`, and `bench` (which
//! runs the separate load generator, `lanyard-bench`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::Config;
use crate::services::auth::{Actor, Role, password};
use crate::setup::{Prepared, prepare};

#[derive(Parser)]
#[command(
    name = "lanyard",
    version,
    about = "Mobile-device management for schools: enrol iPads and Macs, push profiles, keep the user-access register, quarantine devices for safeguarding."
)]
pub struct Cli {
    /// TOML configuration file (default: ./lanyard.toml if it exists). Also LANYARD_CONFIG.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where keys, certificates and the SQLite database live (default ./data). Also LANYARD_DATA_DIR.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// `pretty` or `json`. Also LANYARD_LOG_FORMAT.
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates ./data and the first admin on first start).
    Serve,
    /// Do the first-start set-up (data directory, CA, certificates, database, first admin) without serving.
    Init,
    /// Manage operators from the server's own machine.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Work with the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Measure the protocol core: runs the load generator, `lanyard-bench` (beside this binary, else
    /// on PATH), with the same arguments; `lanyard bench --help` for its options.
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "ARGS")]
        args: Vec<OsString>,
    },
    /// The school's MDM push certificate (from Apple's Push Certificates Portal).
    #[command(subcommand, name = "push-cert")]
    PushCert(PushCertCommand),
    /// A device's command queue.
    #[command(subcommand)]
    Queue(QueueCommand),
}

#[derive(Subcommand)]
enum PushCertCommand {
    /// Make the push key and CSR for Apple's Push Certificates Portal; with an MDM vendor
    /// certificate and key, the signed request file the portal takes. Writes it to --out.
    Request {
        /// The MDM vendor certificate (PEM or DER; Apple's intermediate and root may follow it).
        #[arg(long, value_name = "FILE", requires = "vendor_key")]
        vendor_cert: Option<PathBuf>,
        /// The vendor certificate's private key (PEM). Used once, not stored.
        #[arg(long, value_name = "FILE", requires = "vendor_cert")]
        vendor_key: Option<PathBuf>,
        /// Apple's intermediate and root certificates, if the vendor certificate file lacks them.
        #[arg(long, value_name = "FILE", requires = "vendor_cert")]
        vendor_chain: Option<PathBuf>,
        /// Where to write the request (signed) or the CSR (PEM).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Load (or renew) the push certificate: --cert PEM alone (the certificate Apple returned for
    /// `push-cert request`), --cert PEM --key PEM, or --p12 FILE [--password P]; with none, the
    /// certs directory's push.p12 (or push.pem and push.key).
    Import {
        #[arg(long, value_name = "FILE", conflicts_with_all = ["cert", "key"])]
        p12: Option<PathBuf>,
        #[arg(long, requires = "p12")]
        password: Option<String>,
        #[arg(long, value_name = "PEM")]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "PEM", requires = "cert")]
        key: Option<PathBuf>,
        /// Accept a certificate with a different topic (every enrolled device would have to re-enrol).
        #[arg(long)]
        force: bool,
    },
    /// Show the loaded certificate's subject, topic and expiry.
    Show,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// What is pending for a device, its push history, and why nothing has arrived.
    Show { udid: String },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a new password for USER (generated and printed unless --password is given) and unlock them.
    ResetPassword {
        username: String,
        /// The new password (at least 12 characters). Generated if omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// Create an operator with a role: admin, technician, dsl, headteacher or auditor.
    Create {
        username: String,
        #[arg(long)]
        role: String,
        /// The password (at least 12 characters). Generated and printed if omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// List operators.
    List,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the audit log's hash chain; exit non-zero naming the first entry that does not match.
    Verify,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Bench { args } = &cli.command {
        return bench(args, cli.log_format.as_deref());
    }
    let config = match load_config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lanyard: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lanyard: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, config)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lanyard: {e:#}");
            // A configuration problem found at start-up (a bad certificate in the certs
            // directory, say) exits like one found in the settings.
            if e.downcast_ref::<crate::config::ConfigError>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// The name of the load generator's binary (the `lanyard-bench` crate, `bench/`).
const BENCH_EXE: &str = "lanyard-bench";
/// Where `lanyard-bench` takes the server binary to run from (`lanyard_bench::bench::SERVER_EXE_ENV`).
const BENCH_SERVER_EXE_ENV: &str = "LANYARD_BENCH_SERVER_EXE";

/// `lanyard bench ARGS...`: the load generator is not part of the server; run `lanyard-bench ARGS...`
/// instead of this process, with this binary as the server it starts.
fn bench(args: &[OsString], log_format: Option<&str>) -> ExitCode {
    let name = format!("{BENCH_EXE}{}", std::env::consts::EXE_SUFFIX);
    let me = std::env::current_exe().ok();
    let beside = me.as_deref().and_then(Path::parent).map(|d| d.join(&name)).filter(|p| p.is_file());
    let on_path = || std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|d| d.join(&name)).find(|p| p.is_file());
    let Some(exe) = beside.or_else(on_path) else {
        eprintln!(
            "lanyard: `lanyard bench` runs the load generator, {BENCH_EXE}, which is not beside this binary nor on PATH; \
             build it with `cargo build --release -p lanyard-bench` (it goes beside target/release/lanyard), or run it directly"
        );
        return ExitCode::from(2);
    };
    let mut command = std::process::Command::new(&exe);
    command.args(args);
    if let Some(me) = &me {
        command.env(BENCH_SERVER_EXE_ENV, me);
    }
    if let Some(format) = log_format {
        command.env("LANYARD_LOG_FORMAT", format);
    }
    // Replaces this process: signals, exit status and output are the load generator's own.
    let e = std::os::unix::process::CommandExt::exec(&mut command);
    eprintln!("lanyard: cannot run {}: {e}", exe.display());
    ExitCode::FAILURE
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        config.set("data_dir", d)?;
        if std::env::var_os("LANYARD_DATABASE_URL").is_none() && !config.database_url.starts_with("postgres") {
            config.database_url = format!("sqlite://{}", config.data_dir.join("lanyard.db").display());
        }
    }
    if let Some(f) = &cli.log_format {
        config.set("log_format", f)?;
    }
    Ok(config)
}

async fn run(command: Command, config: Config) -> Result<ExitCode> {
    match command {
        Command::Serve => serve(config).await,
        Command::Init => {
            let public_url = config.effective_public_url(None);
            let p = prepare(config, public_url, Arc::new(SystemClock)).await?;
            print_welcome(&p);
            Ok(ExitCode::SUCCESS)
        }
        Command::Admin(cmd) => admin(cmd, config).await,
        Command::PushCert(cmd) => push_cert(cmd, config).await,
        Command::Queue(QueueCommand::Show { udid }) => {
            let public_url = config.effective_public_url(None);
            let p = prepare(config, public_url, Arc::new(SystemClock)).await?;
            let v = p.ctx.commands.queue_view(&udid).await.map_err(|e| anyhow!("{e}"))?;
            println!(
                "device {}: {}, last seen {}",
                v.udid,
                if v.enrolled { "enrolled" } else { "NOT enrolled" },
                v.last_seen_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
            println!(
                "push: token {}, last push {} ({}), {} sent, {} unanswered, next re-push {}",
                if v.push.token_valid { "valid" } else { "NOT valid" },
                v.push.last_push_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "never".into()),
                v.push.last_push_outcome.as_deref().unwrap_or("-"),
                v.push.pushes_sent,
                v.push.pushes_since_last_seen,
                v.push.next_repush_at.map(|t| t.format("%H:%M:%S UTC").to_string()).unwrap_or_else(|| "-".into()),
            );
            println!("pending ({}):", v.pending.len());
            for c in &v.pending {
                println!(
                    "  {}  {:<24} {:<8} waiting {}s{}",
                    c.command_uuid,
                    c.request_type,
                    c.status,
                    c.waiting_seconds,
                    if c.not_now_count > 0 { format!(", NotNow x{}", c.not_now_count) } else { String::new() }
                );
            }
            for d in &v.diagnosis {
                println!("- {d}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { args } => Ok(bench(&args, None)),
        Command::Audit(AuditCommand::Verify) => {
            let store = crate::store::connect(&config.database_url, config.postgres_pool).await?;
            let report = crate::services::audit::verify_chain(store.as_ref()).await?;
            if report.ok {
                println!("audit log OK: {} entries, hash chain intact", report.entries_checked);
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit log TAMPERED: first bad entry is seq {}: {}",
                    report.first_bad_seq.unwrap_or_default(),
                    report.problem.unwrap_or_default()
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

async fn serve(config: Config) -> Result<ExitCode> {
    let shutdown = crate::faces::server::shutdown_signal();
    let listeners = crate::faces::server::bind(&config.listen).await?;
    let bound = listeners.first().and_then(|l| l.local_addr().ok());
    let public_url = config.effective_public_url(bound);
    let p = prepare(config, public_url, Arc::new(SystemClock)).await?;
    print_welcome(&p);
    if !p.ctx.public_url.starts_with("https://") {
        tracing::warn!(public_url = %p.ctx.public_url, "Apple devices only enrol over https: set LANYARD_PUBLIC_URL to the https address of the proxy in front of Lanyard");
    }
    for l in &listeners {
        tracing::info!(address = %l.local_addr()?, tls = p.ctx.config.tls, "listening");
    }
    tokio::spawn(crate::faces::sweeper::run_sweeper(p.ctx.clone(), crate::services::push::SWEEP_INTERVAL));
    crate::faces::server::serve(p.ctx.clone(), listeners, shutdown).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn print_welcome(p: &Prepared) {
    let ctx = &p.ctx;
    if !p.created.is_empty() {
        println!("Created in {}: {}", ctx.config.data_dir.display(), p.created.join(", "));
    }
    println!("Lanyard console: {}/ui/", ctx.public_url);
    println!("Lanyard API:     {}/api/v1/ (OpenAPI at /api/v1/openapi.json)", ctx.public_url);
    println!("Device CA:       {}/mdm/ca.pem", ctx.public_url);
    if let Some(first) = &p.first_admin {
        match &first.password {
            Some(pw) => {
                println!("First operator created. admin password: {pw}");
                println!("(shown once; store it safely. Forgotten? `lanyard admin reset-password admin`)");
            }
            None => println!("First operator `admin` created with the password from LANYARD_ADMIN_PASSWORD."),
        }
    }
}

async fn push_cert(cmd: PushCertCommand, config: Config) -> Result<ExitCode> {
    let public_url = config.effective_public_url(None);
    let certs_dir = config.certs_dir.clone();
    let p = prepare(config, public_url, Arc::new(SystemClock)).await?;
    let info = match cmd {
        PushCertCommand::Request { vendor_cert, vendor_key, vendor_chain, out } => {
            let read = |f: &std::path::Path| std::fs::read(f).with_context(|| format!("cannot read {}", f.display()));
            let vendor = match (vendor_cert, vendor_key) {
                (Some(c), Some(k)) => Some(crate::services::push::certificate::VendorFiles {
                    cert: read(&c)?,
                    chain: vendor_chain.as_deref().map(read).transpose()?,
                    key: read(&k)?,
                }),
                _ => None,
            };
            let r = p.ctx.push.request_push_cert(&Actor::cli(), vendor).await.map_err(|e| anyhow!("{e}"))?;
            let contents = r.request_file.clone().unwrap_or_else(|| r.csr_pem.clone());
            std::fs::write(&out, contents).with_context(|| format!("cannot write {}", out.display()))?;
            match &r.vendor_subject {
                Some(v) => println!("wrote {}: the push certificate request, signed by {v}", out.display()),
                None => println!(
                    "wrote {}: the CSR. Apple's portal only takes it signed by an MDM vendor certificate: see README, \"Apple push certificate\"",
                    out.display()
                ),
            }
            println!("request {} (its key is sealed in Lanyard's database)", r.id);
            for (i, step) in r.next_steps.iter().enumerate() {
                println!("{}. {step}", i + 1);
            }
            return Ok(ExitCode::SUCCESS);
        }
        PushCertCommand::Import { p12, password, cert, key, force } => {
            let read = |f: &std::path::Path| std::fs::read(f).with_context(|| format!("cannot read {}", f.display()));
            let upload = match (p12, cert, key) {
                (Some(f), None, None) => {
                    crate::services::push::certificate::PushCertUpload::P12 { der: read(&f)?, password: password.unwrap_or_default() }
                }
                (None, Some(c), Some(k)) => {
                    crate::services::push::certificate::PushCertUpload::Pem { cert_pem: read(&c)?, key_pem: read(&k)? }
                }
                (None, Some(c), None) => crate::services::push::certificate::PushCertUpload::Certificate { cert_pem: read(&c)? },
                (None, None, None) => {
                    // Nothing given: what the operator put in the certs directory.
                    let (p12, pem, pem_key) = (certs_dir.join("push.p12"), certs_dir.join("push.pem"), certs_dir.join("push.key"));
                    if p12.exists() {
                        println!("importing {} (no password; for one with a password, give --p12 FILE --password P)", p12.display());
                        crate::services::push::certificate::PushCertUpload::P12 { der: read(&p12)?, password: String::new() }
                    } else if pem.exists() && pem_key.exists() {
                        println!("importing {} and {}", pem.display(), pem_key.display());
                        crate::services::push::certificate::PushCertUpload::Pem { cert_pem: read(&pem)?, key_pem: read(&pem_key)? }
                    } else {
                        return Err(anyhow!(
                            "no push certificate given, and {} has neither push.p12 nor push.pem with push.key: give --p12 FILE [--password P], or --cert PEM --key PEM, or put push.p12 in {}",
                            certs_dir.display(),
                            certs_dir.display()
                        ));
                    }
                }
                _ => return Err(anyhow!("give --p12 FILE, or --cert PEM and --key PEM")),
            };
            p.ctx.push.load_push_cert(&Actor::cli(), upload, force).await.map_err(|e| anyhow!("{e}"))?
        }
        PushCertCommand::Show => {
            p.ctx.push.push_cert_info().await.map_err(|e| anyhow!("{e}"))?.ok_or_else(|| anyhow!("no push certificate loaded"))?
        }
    };
    println!(
        "subject: {}\ntopic:   {}\nexpires: {} ({} days left, {})",
        info.subject, info.topic, info.not_after, info.days_left, info.status
    );
    if let Some(w) = info.warning {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn admin(cmd: AdminCommand, config: Config) -> Result<ExitCode> {
    let public_url = config.effective_public_url(None);
    let p = prepare(config, public_url, Arc::new(SystemClock)).await?;
    let ctx = p.ctx;
    match cmd {
        AdminCommand::ResetPassword { username, password: given } => {
            let op = ctx.operators.operator_by_username(&username).await?.ok_or_else(|| anyhow!("no operator called {username}"))?;
            let pw = given.clone().unwrap_or_else(password::generate);
            ctx.operators.update_operator(&Actor::cli(), op.id, None, None, Some(&pw)).await.map_err(|e| anyhow!("{e}"))?;
            ctx.operators.clear_login_failures(&format!("user:{}", username.to_lowercase())).await?;
            if given.is_none() {
                println!("{username} password: {pw}");
            } else {
                println!("password for {username} changed");
            }
        }
        AdminCommand::Create { username, role, password: given } => {
            let role =
                Role::parse(&role).ok_or_else(|| anyhow!("unknown role {role:?}: use admin, technician, dsl, headteacher or auditor"))?;
            let pw = given.clone().unwrap_or_else(password::generate);
            ctx.operators.create_operator(&Actor::cli(), &username, &pw, role).await.map_err(|e| anyhow!("{e}"))?;
            if given.is_none() {
                println!("{username} password: {pw}");
            } else {
                println!("created {username} ({role})");
            }
        }
        AdminCommand::List => {
            let mut after: Option<String> = None;
            loop {
                let page = ctx.operators.list_operators(after.as_deref(), 500).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.username.clone());
                for o in &page {
                    println!("{:<24} {:<12} {}", o.username, o.role, if o.disabled { "disabled" } else { "active" });
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
