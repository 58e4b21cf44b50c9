//! The command line: `serve`, `sandbox`, `upstreams`, `schema`. `main` only calls [`run`].

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use tracing::info;

use crate::{
    auth::ClaimsBuilder,
    config::{self, Settings, TelemetrySettings},
    sandbox::{self, Sandbox, SandboxOptions},
    server::Application,
    telemetry::{self, LogFormat},
};

#[derive(Parser)]
#[command(
    name = "protocol-graph",
    version,
    about = "A GraphQL gateway over Mosia Omnichannel and TOTVS Health Plans"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const SERVE_ENVIRONMENT: &str = "\
Environment (every missing one is named at start):
  MOSIA_BASE_URL      Mosia's base URL, e.g. https://api.mosiaomnichannel.com.br
  MOSIA_TOKEN         Mosia's client token
  TOTVS_BASE_URL      the Protheus REST root, e.g. https://host:port/rest
  TOTVS_USERNAME      TOTVS password-grant user
  TOTVS_PASSWORD      TOTVS password-grant password
  AUTH_JWT_SECRET     HS256 secret of callers' tokens (at least 32 bytes)
  AUTH_JWKS_URL       RS256/ES256 keys of callers' tokens
  AUTH_ISSUER         required `iss`, when set
  AUTH_AUDIENCE       required `aud`, when set
  AUTH_DISABLED       true: no token checks (behind an authenticating proxy only)
  LISTEN_ADDR         where to listen [default: 127.0.0.1:8080]
  CONFIG_FILE         optional TOML file of the other settings (README, Configuration)
  RUST_LOG            log filter [default: info,tower_http=warn]

No upstreams at hand? `protocol-graph sandbox` runs the gateway on fake ones.";

#[derive(Subcommand)]
enum Command {
    /// Serve the graph against the real upstreams named by the environment (see README).
    #[command(after_help = SERVE_ENVIRONMENT)]
    Serve,
    /// Start fake Mosia and TOTVS upstreams in-process and serve the graph against them.
    Sandbox {
        /// Where the gateway listens [default: LISTEN_ADDR, else 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Latency the fake upstreams add to every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Turn the gateway's shared cache off (every read goes upstream).
        #[arg(long)]
        no_cache: bool,
        /// Accept requests without a token (by default the sandbox signs and prints a staff
        /// token and a beneficiary token with a secret made for this run).
        #[arg(long)]
        no_auth: bool,
    },
    /// Print the subgraph SDL (what `schema.graphql` holds).
    Schema,
    /// Exit 0 when the gateway at LISTEN_ADDR answers /healthz (the Docker HEALTHCHECK).
    Health,
    /// Start only the fake Mosia and TOTVS upstreams (no gateway), e.g. for the benchmark.
    ///
    /// Prints `MOSIA_BASE_URL=...` and `TOTVS_BASE_URL=...` on stdout, then runs until
    /// Ctrl-C or SIGTERM; on SIGUSR1 and at exit prints a `SANDBOX_CALLS ...` line of the
    /// requests served so far, by route. Credentials: `MOSIA_TOKEN=sandbox-mosia-token`,
    /// `TOTVS_USERNAME=sandbox`, `TOTVS_PASSWORD=sandbox-password`.
    Upstreams {
        /// Latency the fake upstreams add to every answer, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Loopback port for the fake Mosia (0: any free port).
        #[arg(long, default_value_t = 0)]
        mosia_port: u16,
        /// Loopback port for the fake TOTVS (0: any free port).
        #[arg(long, default_value_t = 0)]
        totvs_port: u16,
    },
}

/// Parses the command line and runs the command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Schema => {
            print!("{}", crate::sdl());
            return ExitCode::SUCCESS;
        }
        Command::Health => return health(),
        _ => {}
    }
    let format = match cli.command {
        // Collected by machines: one JSON object per line.
        Command::Serve => LogFormat::Json,
        _ => LogFormat::Readable,
    };
    // Dropped after the runtime, so the spans of the last requests are sent.
    let _telemetry = match TelemetrySettings::from_env()
        .map_err(|err| format!("configuration error: {err}"))
        .and_then(|settings| telemetry::init(&settings, format).map_err(|err| err.to_string()))
    {
        Ok(telemetry) => telemetry,
        Err(message) => return fail(&message),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("cannot start the runtime: {err}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve => serve().await,
            Command::Sandbox {
                listen,
                latency_ms,
                no_cache,
                no_auth,
            } => run_sandbox(listen, Duration::from_millis(latency_ms), no_cache, no_auth).await,
            Command::Upstreams {
                latency_ms,
                mosia_port,
                totvs_port,
            } => run_upstreams(Duration::from_millis(latency_ms), mosia_port, totvs_port).await,
            Command::Schema | Command::Health => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

/// A plain HTTP/1.1 GET of `/healthz` on the configured address, with a short deadline: the
/// slim runtime image has no curl.
fn health() -> ExitCode {
    use std::io::{Read, Write};

    let addr = config::health_addr();
    let probe = || -> std::io::Result<bool> {
        let timeout = Duration::from_secs(2);
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => fail(&format!("{addr}/healthz did not answer 200")),
        Err(err) => fail(&format!("{addr}/healthz: {err}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("protocol-graph: {message}");
    ExitCode::from(2)
}

async fn serve() -> Result<(), String> {
    let settings = Settings::from_env().map_err(|err| format!("configuration error: {err}"))?;
    let app = Application::build(settings)
        .await
        .map_err(|err| err.to_string())?;
    info!(addr = %app.local_addr(), "serving the graph at /graphql");
    app.run_until(shutdown_signal())
        .await
        .map_err(|err| err.to_string())
}

async fn run_sandbox(
    listen: Option<SocketAddr>,
    latency: Duration,
    no_cache: bool,
    no_auth: bool,
) -> Result<(), String> {
    let upstreams = Sandbox::start(SandboxOptions {
        latency,
        ..SandboxOptions::default()
    })
    .await
    .map_err(|err| format!("cannot start the sandbox upstreams: {err}"))?;
    let mut settings = Settings::for_sandbox(
        &upstreams.mosia_url(),
        &upstreams.totvs_url(),
        (
            sandbox::MOSIA_TOKEN,
            sandbox::TOTVS_USERNAME,
            sandbox::TOTVS_PASSWORD,
        ),
        listen,
    )
    .map_err(|err| format!("configuration error: {err}"))?;
    if no_cache {
        settings.cache.enabled = false;
    }
    let tokens = (!no_auth).then(|| sandbox_tokens(&mut settings));
    let app = Application::build(settings)
        .await
        .map_err(|err| err.to_string())?;
    let addr = app.local_addr();
    println!("{}", banner(addr, &upstreams));
    if let Some((staff, beneficiary)) = tokens {
        println!(
            "\nTokens for this run (signed with a secret made for it; GraphiQL's Headers tab has the staff one):\n  staff (protocols:read protocols:write): Authorization: Bearer {staff}\n  beneficiary 13331584754 / 00011008000031015: Authorization: Bearer {beneficiary}\n(`sandbox --no-auth` runs without tokens)"
        );
    }
    app.run_until(shutdown_signal())
        .await
        .map_err(|err| err.to_string())
}

/// Turns authentication on with a per-run HS256 secret; the staff and beneficiary tokens.
fn sandbox_tokens(settings: &mut Settings) -> (String, String) {
    let secret: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(48)
        .collect();
    let twelve_hours = 12 * 3600;
    let staff = ClaimsBuilder::new("sandbox-staff")
        .staff()
        .expires_in(twelve_hours)
        .mint_hs256(&secret);
    let beneficiary = ClaimsBuilder::new("sandbox-beneficiary")
        .unique_key("13331584754")
        .subscriber_id("00011008000031015")
        .expires_in(twelve_hours)
        .mint_hs256(&secret);
    settings.auth.disabled = false;
    settings.auth.jwt_secret = Some(crate::config::Secret::new(secret));
    settings.server.graphiql_headers =
        Some(serde_json::json!({ "Authorization": format!("Bearer {staff}") }).to_string());
    (staff, beneficiary)
}

async fn run_upstreams(latency: Duration, mosia_port: u16, totvs_port: u16) -> Result<(), String> {
    use std::io::Write;

    let upstreams = Sandbox::start(SandboxOptions {
        latency,
        mosia_port,
        totvs_port,
        ..SandboxOptions::default()
    })
    .await
    .map_err(|err| format!("cannot start the sandbox upstreams: {err}"))?;
    let (mosia, totvs) = (upstreams.mosia_url(), upstreams.totvs_url());
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "MOSIA_BASE_URL={mosia}")
        .and_then(|()| writeln!(stdout, "TOTVS_BASE_URL={totvs}"))
        .and_then(|()| stdout.flush())
        .map_err(|err| format!("cannot write to stdout: {err}"))?;
    drop(stdout);
    tokio::select! {
        () = shutdown_signal() => {},
        () = print_calls_on_usr1(&upstreams) => {},
    }
    print_calls(&upstreams);
    drop(upstreams);
    Ok(())
}

/// Prints the calls on every SIGUSR1; never returns.
async fn print_calls_on_usr1(upstreams: &Sandbox) {
    #[cfg(unix)]
    if let Ok(mut usr1) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
    {
        while usr1.recv().await.is_some() {
            print_calls(upstreams);
        }
    }
    #[cfg(not(unix))]
    let _ = upstreams;
    std::future::pending::<()>().await;
}

/// One line of the requests the fake upstreams served so far, by route: printed on SIGUSR1
/// and at exit, so that a benchmark can count upstream calls from the upstream's side.
fn print_calls(upstreams: &Sandbox) {
    use std::io::Write;

    let c = upstreams.calls();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "SANDBOX_CALLS mosia={} totvs_token={} totvs_protocols={} totvs_interactions={} \
         totvs_attachments={} totvs_requests={}",
        c.mosia,
        c.totvs_token,
        c.totvs_protocols,
        c.totvs_interactions,
        c.totvs_attachments,
        c.totvs_requests
    );
    let _ = stdout.flush();
}

fn banner(addr: SocketAddr, upstreams: &Sandbox) -> String {
    let ex = Sandbox::examples();
    format!(
        "protocol-graph sandbox\n\
         \n  GraphiQL:  http://{addr}/graphql\n  \
         fake Mosia: {mosia}\n  fake TOTVS: {totvs}\n\
         \nTry:\n\n\
         {{\n  beneficiary(uniqueKey: \"{uk}\", subscriberId: \"{sid}\") {{\n    name\n    \
         latestProtocols(limit: 3) {{ number subject registeredAt status {{ description }} }}\n    \
         authorizationProtocols(pageSize: 5) {{\n      hasNext remainingRecords\n      \
         items {{ protocol status statusCode requestedOn professional {{ name }} interactions {{ items {{ date reason }} }} }}\n    \
         }}\n  }}\n}}\n\
         \nProtocol {awaiting} awaits a document: attach one with addAuthorizationAttachments.\n\
         Press Ctrl-C to stop.",
        mosia = upstreams.mosia_url(),
        totvs = upstreams.totvs_url(),
        uk = ex.unique_key,
        sid = ex.subscriber_id,
        awaiting = ex.protocol_awaiting_document,
    )
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    info!("shutting down");
}
