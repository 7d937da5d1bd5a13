//! The `flow` command: run the server and administer tenants and keys.

use std::{net::IpAddr, path::PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use flow_app::services::{keys::KeySpec, tenants, users};
use flow_server::{
    config::{Config, LogFormat, Overrides},
    open_store, shutdown_signal, telemetry, Server,
};
use flow_store::Store;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "flow",
    version,
    about = "Flow: the multi-tenant integration platform"
)]
struct Cli {
    /// A TOML file with settings (see config.default.toml).
    #[arg(long, global = true, env = "FLOW_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the embedded database and other files [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL; without it Flow uses <data-dir>/flow.db.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log line format [default: text].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage dashboard users.
    #[command(subcommand)]
    User(UserCommand),
    /// Load a backup (from POST /admin/backups) into an empty tenant.
    Restore {
        /// Tenant slug or id; it must have no data yet.
        #[arg(long)]
        tenant: String,
        /// The .jsonl backup file; its .sha256 file must be beside it.
        file: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Port to listen on [default: 4000].
    #[arg(long)]
    port: Option<u16>,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long)]
    host: Option<IpAddr>,
    /// Create two demo tenants with the keys demo-key and demo-key-b if absent.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its first API key (shown only once).
    Create {
        name: String,
        /// URL-safe short name [default: derived from the name].
        #[arg(long)]
        slug: Option<String>,
    },
    /// List tenants.
    List,
    /// Suspend a tenant: every request with its keys gets 401 until it is activated.
    Deactivate {
        /// Tenant slug or id.
        tenant: String,
    },
    /// Resume a suspended tenant.
    Activate {
        /// Tenant slug or id.
        tenant: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key and print it (shown only once).
    Create {
        /// Tenant slug or id.
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "api")]
        name: String,
        /// Comma-separated grants such as read:leads,write:leads or *.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        permissions: Vec<String>,
        /// Comma-separated apps allowed in x-source-app, or *.
        #[arg(long, value_delimiter = ',', default_value = "*")]
        apps: Vec<String>,
        /// Requests per minute [default: the configured default].
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// List a tenant's keys (never the secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key: requests with it get 401 from then on.
    Revoke {
        #[arg(long)]
        tenant: String,
        /// The key's id, as printed by `flow key list`.
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user (or add an existing one) as a member of a tenant.
    Create {
        /// Tenant slug or id.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "Admin")]
        name: String,
        /// admin, user or viewer.
        #[arg(long, default_value = "admin")]
        role: String,
        /// At least 10 characters [default: generated and printed]. Prefer
        /// FLOW_USER_PASSWORD: a command line is visible to other users of the machine.
        #[arg(long, env = "FLOW_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Invite someone to a tenant and print the invitation's token, for the operator to
    /// pass on (a tenant admin's `POST /users` makes the same invitation; Flow does not
    /// send email yet). Inviting again replaces the pending invitation and its token.
    Invite {
        /// Tenant slug or id.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        /// admin, user or viewer.
        #[arg(long, default_value = "user")]
        role: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (port, host) = match &cli.command {
        Command::Serve(args) => (args.port, args.host),
        _ => (None, None),
    };
    let config = Config::load(
        cli.config.as_deref(),
        Overrides {
            host,
            port,
            data_dir: cli.data_dir,
            database_url: cli.database_url,
            log_format: cli.log_format,
        },
    )?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.runtime_threads())
        .enable_all()
        .build()?
        .block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    match command {
        Command::Serve(args) => serve(config, args.demo).await,
        Command::Migrate => {
            open_store(&config).await?;
            println!("database is up to date: {}", config.database_url_redacted());
            Ok(())
        }
        Command::Tenant(command) => tenant(config, command).await,
        Command::Key(command) => key(config, command).await,
        Command::User(command) => user(config, command).await,
        Command::Restore { tenant, file } => {
            // A backup job names its file relative to the data directory.
            let file = if file.is_relative() && !file.exists() {
                config.data_dir.join(&file)
            } else {
                file
            };
            let store = open_store(&config).await?;
            let target = tenants::find_tenant(&*store, &tenant)
                .await
                .map_err(|e| anyhow::anyhow!("tenant {tenant:?}: {}", e.message))?;
            let restored = flow_app::processors::backup::restore(&*store, target.id, &file)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!(
                "restored into {}: {} contacts, {} leads, {} deals, {} activities, {} incidents",
                target.slug,
                restored.contacts,
                restored.leads,
                restored.deals,
                restored.activities,
                restored.incidents
            );
            store.close().await;
            Ok(())
        }
    }
}

async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    tracing::info!(?config, "starting flow");
    // Each connection holds a file descriptor; the default soft limit (often 1,024) would
    // cap Flow far below what the machine allows.
    let fd_limit = flow_server::listener::raise_fd_limit();
    tracing::info!(fd_limit, "open-file limit");
    let store = open_store(&config).await?;
    // Row-level security is the second wall between tenants; a role that is not held to
    // it would leave only the application's own filters.
    if let Some(reason) = store.privileged_role().await? {
        if !config.db_allow_privileged_role {
            anyhow::bail!(
                "refusing to serve: {reason}, which is not held to row-level security. \
                 Serve as the role `flow migrate` grants to (db_app_role = {:?}), or set \
                 db_allow_privileged_role = true to accept the risk",
                config.db_app_role
            );
        }
        tracing::warn!(
            %reason,
            "SERVING WITHOUT ROW-LEVEL SECURITY: only the application separates tenants"
        );
    }
    let demo_keys = if demo {
        let keys = tenants::ensure_demo(&*store, config.default_rate_limit_per_minute)
            .await
            .map_err(|e| anyhow::anyhow!("creating demo tenants: {}", e.message))?;
        let demo_tenants: Vec<_> = keys.iter().map(|(tenant, _)| tenant.clone()).collect();
        tenants::ensure_demo_user(&*store, &demo_tenants)
            .await
            .map_err(|e| anyhow::anyhow!("creating the demo user: {}", e.message))?;
        keys
    } else {
        Vec::new()
    };
    let shutdown = CancellationToken::new();
    let server = Server::bind(store, config, shutdown.clone()).await?;
    let url = format!("http://{}", server.local_addr());
    println!("Flow is listening on {url}");
    println!("  API docs:  {url}/docs");
    for (tenant, key) in &demo_keys {
        println!(
            "  Demo tenant {:?} ({}): x-tenant-key: {key}",
            tenant.name, tenant.id
        );
    }
    if let Some((_, key)) = demo_keys.first() {
        let (email, password) = tenants::DEMO_USER;
        println!("  Dashboard: {url}/  (sign in as {email} / {password})");
        println!("  Try:       curl -H 'x-tenant-key: {key}' {url}/leads");
    }
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        trigger.cancel();
    });
    server.run().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn tenant(config: Config, command: TenantCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    match command {
        TenantCommand::Create { name, slug } => {
            let (tenant, key) = tenants::create_tenant(
                &*store,
                &name,
                slug.as_deref(),
                config.default_rate_limit_per_minute,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("tenant:  {} ({})", tenant.slug, tenant.id);
            println!("api key: {}", key.secret);
            println!("Store the key now: it is not shown again.");
        }
        TenantCommand::Deactivate { tenant } => set_tenant_active(&*store, &tenant, false).await?,
        TenantCommand::Activate { tenant } => set_tenant_active(&*store, &tenant, true).await?,
        TenantCommand::List => {
            for tenant in store.list_tenants().await? {
                let state = if tenant.active { "active" } else { "inactive" };
                println!("{}\t{}\t{}\t{state}", tenant.id, tenant.slug, tenant.name);
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn set_tenant_active(
    store: &dyn Store,
    slug_or_id: &str,
    active: bool,
) -> anyhow::Result<()> {
    let tenant = tenants::find_tenant(store, slug_or_id)
        .await
        .map_err(|e| anyhow::anyhow!("tenant {slug_or_id:?}: {}", e.message))?;
    store.set_tenant_active(tenant.id, active).await?;
    let state = if active { "active" } else { "inactive" };
    println!("{} is now {state}", tenant.slug);
    Ok(())
}

async fn user(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let (tenant, email, name, role, password) = match command {
        UserCommand::Create {
            tenant,
            email,
            name,
            role,
            password,
        } => (tenant, email, name, role, password),
        UserCommand::Invite {
            tenant,
            email,
            role,
        } => {
            let tenant = tenants::find_tenant(&*store, &tenant)
                .await
                .map_err(|e| anyhow::anyhow!("tenant {tenant:?}: {}", e.message))?;
            let role: flow_store::Role = role.parse().map_err(anyhow::Error::msg)?;
            let (invitation, token) = users::invite(
                &*store,
                &flow_app::auth::Caller::system(tenant.id),
                users::AddMember { email, role },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!(
                "invitation: {} as {} of {}, until {}",
                invitation.email,
                invitation.role.as_str(),
                tenant.slug,
                invitation.expires_at.to_rfc3339()
            );
            println!("token:      {token}");
            println!(
                "They accept with POST /auth/invitations/accept {{\"token\", \"password\", \"name\"}}."
            );
            store.close().await;
            return Ok(());
        }
    };
    let tenant = tenants::find_tenant(&*store, &tenant)
        .await
        .map_err(|e| anyhow::anyhow!("tenant {tenant:?}: {}", e.message))?;
    let role: flow_store::Role = role.parse().map_err(anyhow::Error::msg)?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(|| {
        use rand::RngCore;
        let mut bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    });
    let user = match store.find_user_credentials(&email).await? {
        Some(existing) => {
            let mut tx = store.begin(tenant.id).await?;
            tx.upsert_member(existing.user.id, role).await?;
            tx.commit().await?;
            println!(
                "{} was already a user; now {} of {}",
                existing.user.email,
                role.as_str(),
                tenant.slug
            );
            existing.user
        }
        None => {
            let user = users::create_account(&*store, tenant.id, &email, &name, &password, role)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!(
                "user:     {} ({}), {} of {}",
                user.email,
                user.id,
                role.as_str(),
                tenant.slug
            );
            if generated {
                println!("password: {password}");
                println!("Store the password now: it is not shown again.");
            }
            user
        }
    };
    tracing::debug!(user = %user.id, "user ready");
    store.close().await;
    Ok(())
}

async fn key(config: Config, command: KeyCommand) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let find = |slug: String| {
        let store = store.clone();
        async move {
            tenants::find_tenant(&*store, &slug)
                .await
                .map_err(|e| anyhow::anyhow!("tenant {slug:?}: {}", e.message))
        }
    };
    match command {
        KeyCommand::Create {
            tenant,
            name,
            permissions,
            apps,
            rate_limit,
        } => {
            let tenant = find(tenant).await?;
            let spec = KeySpec {
                name,
                permissions,
                allowed_apps: apps,
                rate_limit_per_minute: rate_limit.unwrap_or(config.default_rate_limit_per_minute),
            };
            let created = flow_app::services::keys::create(
                &*store,
                &flow_app::auth::Caller::system(tenant.id),
                &spec,
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("key id:  {}", created.key.id);
            println!("api key: {}", created.secret);
            println!("Store the key now: it is not shown again.");
        }
        KeyCommand::List { tenant } => {
            let tenant = find(tenant).await?;
            let mut tx = store.read(tenant.id).await?;
            for key in tx.list_api_keys().await? {
                let state = if key.active { "active" } else { "revoked" };
                println!(
                    "{}\t{}\t{}…\t{}\tapps={}\t{}/min\t{state}",
                    key.id,
                    key.name,
                    key.prefix,
                    key.permissions.join(","),
                    key.allowed_apps.join(","),
                    key.rate_limit_per_minute
                );
            }
        }
        KeyCommand::Revoke { tenant, id } => {
            let tenant = find(tenant).await?;
            let id = id.parse().context("key id must be a UUID")?;
            flow_app::services::keys::revoke(
                &*store,
                &flow_app::auth::Caller::system(tenant.id),
                id,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            println!("revoked {id}");
        }
    }
    store.close().await;
    Ok(())
}
