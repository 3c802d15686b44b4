//! `shoal-bench-connectors`: round trips of the same operations from a plain Rust client
//! and through `shoal-connectors`' gRPC API, one at a time, for bench/connectors.sh.
//!
//!   shoal-bench-connectors --connectors 127.0.0.1:PORT --amqp-connection NAME \
//!       --sql-connection NAME --queue Q --n 5000
//!
//! Prints one JSON object: operations per second of each path.

use std::time::Instant;

use clap::Parser;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use shoal_proto::connectors::v1 as pb;

#[derive(Parser)]
struct Args {
    /// gRPC address of a shoal-connectors.
    #[arg(long)]
    connectors: String,
    /// An `amqp` outgoing connection that publishes to `queue` (routing_key).
    #[arg(long)]
    amqp_connection: String,
    /// A `sql` outgoing connection to the same PostgreSQL as `pg_url`.
    #[arg(long)]
    sql_connection: String,
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pg_url: String,
    #[arg(long)]
    queue: String,
    #[arg(long, default_value_t = 5000)]
    n: u32,
    /// Only delete `queue` and exit (after the runs).
    #[arg(long)]
    cleanup: bool,
    /// The cluster's certificates (a `shoal up` DIR/.shoal/tls): the calls go over mutual
    /// TLS as an executor's do. Without it, plain text (a `--plaintext` cluster).
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<std::path::PathBuf>,
}

fn rate(n: u32, started: Instant) -> f64 {
    f64::from(n) / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let body = vec![b'x'; 100];

    // AMQP: publish and wait for the broker's confirm, one message at a time.
    let conn = Connection::connect(&a.amqp_url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    if a.cleanup {
        ch.queue_delete(a.queue.as_str().into(), QueueDeleteOptions::default())
            .await?;
        return Ok(());
    }
    ch.queue_declare(
        a.queue.as_str().into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let publish_once = |ch: lapin::Channel, body: Vec<u8>, queue: String| async move {
        ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await?
        .await
    };
    for _ in 0..a.n / 10 {
        publish_once(ch.clone(), body.clone(), a.queue.clone()).await?;
    }
    let t = Instant::now();
    for _ in 0..a.n {
        publish_once(ch.clone(), body.clone(), a.queue.clone()).await?;
    }
    let amqp_direct = rate(a.n, t);

    let channel = match &a.tls_dir {
        None => {
            tonic::transport::Endpoint::from_shared(format!("http://{}", a.connectors))?
                .tcp_nodelay(true)
                .connect()
                .await?
        }
        Some(dir) => {
            let tls = shoal_common::tls::client_from_dir(dir, "executor", "connectors")?;
            tonic::transport::Endpoint::from_shared(format!("https://{}", a.connectors))?
                .tcp_nodelay(true)
                .tls_config(tls)?
                .connect()
                .await?
        }
    };
    let mut c = pb::connectors_client::ConnectorsClient::new(channel);
    // What the executor sends for `self.out.amqp.send(...)`.
    let req = pb::CallRequest {
        kind: "amqp".into(),
        op: "publish".into(),
        connection: a.amqp_connection.clone(),
        meta_json: serde_json::to_vec(&serde_json::json!({"connection": a.amqp_connection}))?,
        body: body.clone(),
        ..Default::default()
    };
    for _ in 0..a.n / 10 {
        c.call(req.clone()).await?;
    }
    let t = Instant::now();
    for _ in 0..a.n {
        let r = c.call(req.clone()).await?.into_inner();
        if let Some(e) = r.error {
            anyhow::bail!("publish through the connector failed: {}", e.message);
        }
    }
    let amqp_connector = rate(a.n, t);
    ch.queue_purge(a.queue.as_str().into(), QueuePurgeOptions::default())
        .await?;
    let _ = conn.close(200, "done".into()).await;

    // SQL: one parameterised query round trip at a time.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&a.pg_url)
        .await?;
    let query = |pool: sqlx::PgPool, i: i32| async move {
        sqlx::query_scalar::<_, i32>("select $1::int4 + 1")
            .bind(i)
            .fetch_one(&pool)
            .await
    };
    for i in 0..(a.n / 10) as i32 {
        query(pool.clone(), i).await?;
    }
    let t = Instant::now();
    for i in 0..a.n as i32 {
        query(pool.clone(), i).await?;
    }
    let sql_direct = rate(a.n, t);
    // What the executor sends for `self.out.sql.get(...).execute(...)`.
    let sql = |i: u32| pb::CallRequest {
        kind: "sql".into(),
        op: "execute".into(),
        connection: a.sql_connection.clone(),
        meta_json: serde_json::to_vec(&serde_json::json!({
            "connection": a.sql_connection, "session_id": "",
            "sql": "select :i::int4 + 1", "bind": {"i": i},
        }))
        .unwrap_or_default(),
        ..Default::default()
    };
    for i in 0..a.n / 10 {
        c.call(sql(i)).await?;
    }
    let t = Instant::now();
    for i in 0..a.n {
        let r = c.call(sql(i)).await?.into_inner();
        if let Some(e) = r.error {
            anyhow::bail!("query through the connector failed: {}", e.message);
        }
    }
    let sql_connector = rate(a.n, t);
    println!(
        "{}",
        serde_json::json!({
            "amqp_direct": amqp_direct, "amqp_connector": amqp_connector,
            "sql_direct": sql_direct, "sql_connector": sql_connector,
        })
    );
    Ok(())
}
