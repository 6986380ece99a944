//! Work giving way at the database (`furrow::store::giving_way`, what a large account's sync
//! parts run in) on PostgreSQL: it has connections of its own, so however many of them it holds,
//! everyone else's work still gets the pool's connections, and it never takes more than its own.
//! Work ahead (`furrow::store::ahead`: API requests, the newest growers' syncs) has its own
//! too, so it never waits behind either. (SQLite's writer queue is covered by the store's unit
//! tests.) A connection the server closed while it sat idle is replaced, not handed out.

mod common;

use std::time::Duration;

use common::{fresh_database, postgres_admin_url, Db};
use furrow::store::{
    ahead, giving_way, PostgresConnections, Store, AHEAD_CONNECTIONS, BULK_CONNECTIONS,
    PING_AFTER_IDLE, POSTGRES_CONNECTIONS,
};

/// Not the defaults: the counts are the settings' (`database_bulk_connections`,
/// `database_ahead_connections`).
const BULK: u32 = BULK_CONNECTIONS + 1;
const AHEAD: u32 = AHEAD_CONNECTIONS + 2;

/// A store on a fresh PostgreSQL database, with `BULK` connections for work giving way and
/// `AHEAD` for work ahead.
async fn postgres_store() -> (Store, String, std::path::PathBuf) {
    let (url, dir) = fresh_database(Db::Postgres).await;
    let connections = PostgresConnections {
        bulk: BULK,
        ahead: AHEAD,
    };
    let store = Store::connect_with(&url, connections).await.unwrap();
    store.migrate().await.unwrap();
    (store, url, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_giving_way_holds_connections_of_its_own_on_postgres() {
    let (store, url, dir) = postgres_store().await;

    // Work giving way holds every connection it may have.
    let mut held = Vec::new();
    for _ in 0..BULK {
        held.push(
            giving_way(async { store.pool().acquire().await })
                .await
                .unwrap(),
        );
    }
    // One more for it waits for one of those.
    let more = tokio::time::timeout(
        Duration::from_millis(500),
        giving_way(async { store.pool().acquire().await }),
    )
    .await;
    assert!(
        more.is_err(),
        "work giving way got more than its {BULK} connections"
    );
    // Everyone else still has all of theirs (a pool shared with it would have a few left).
    let mut others = Vec::new();
    for n in 0..POSTGRES_CONNECTIONS {
        let conn = tokio::time::timeout(Duration::from_secs(5), store.pool().acquire())
            .await
            .unwrap_or_else(|_| {
                panic!("connection {n} of the others' pool waited for work giving way")
            })
            .unwrap();
        others.push(conn);
    }
    drop(others);
    // A connection it gives back is its own again.
    drop(held.pop());
    let ok = tokio::time::timeout(
        Duration::from_secs(5),
        giving_way(async { store.pool().acquire().await }),
    )
    .await
    .expect("a connection given back is taken again");
    assert!(ok.is_ok());
    common::drop_database(&url, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_ahead_holds_connections_of_its_own_on_postgres() {
    let (store, url, dir) = postgres_store().await;

    // Everyone else's work and work giving way hold every connection they may have.
    let mut held = Vec::new();
    for _ in 0..POSTGRES_CONNECTIONS {
        held.push(store.pool().acquire().await.unwrap());
    }
    for _ in 0..BULK {
        held.push(
            giving_way(async { store.pool().acquire().await })
                .await
                .unwrap(),
        );
    }
    // Work ahead still gets all of its own.
    let mut ahead_held = Vec::new();
    for n in 0..AHEAD {
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ahead(async { store.pool().acquire().await }),
        )
        .await
        .unwrap_or_else(|_| panic!("connection {n} of work ahead waited for the others'"))
        .unwrap();
        ahead_held.push(conn);
    }
    // And no more: one more for it waits for one of those, not for the others' pool.
    drop(held);
    let more = tokio::time::timeout(
        Duration::from_millis(500),
        ahead(async { store.pool().acquire().await }),
    )
    .await;
    assert!(
        more.is_err(),
        "work ahead got more than its {AHEAD} connections"
    );
    common::drop_database(&url, &dir).await;
}

/// The server's process behind a connection of the pool the work in progress takes its turn
/// on (`turn`: as everyone else's, ahead or giving way).
async fn backend_pid(store: &Store, turn: &str) -> Result<i64, sqlx::Error> {
    let query = async {
        sqlx::query_scalar::<_, i64>("SELECT CAST(pg_backend_pid() AS BIGINT)")
            .fetch_one(store.pool())
            .await
    };
    match turn {
        "ahead" => ahead(query).await,
        "giving way" => giving_way(query).await,
        _ => query.await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_while_idle_are_replaced_on_postgres() {
    let (store, url, dir) = postgres_store().await;
    let turns = ["everyone else's", "ahead", "giving way"];
    let mut before = Vec::new();
    for turn in turns {
        before.push(backend_pid(&store, turn).await.unwrap());
    }

    // The server ends every connection to the database (a restart, an administrator, a proxy's
    // idle timeout would do the same) while the pools hold them idle.
    let database: String = sqlx::query_scalar("SELECT CAST(current_database() AS TEXT)")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let admin = sqlx::AnyPool::connect(&postgres_admin_url()).await.unwrap();
    let ended: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1) AS t",
    )
    .bind(&database)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(ended >= 3, "{ended} connections ended");
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;

    // Each pool's next statement runs on a new connection rather than failing on a dead one.
    for (turn, old) in turns.into_iter().zip(before) {
        let pid = backend_pid(&store, turn)
            .await
            .unwrap_or_else(|e| panic!("{turn}: {e}"));
        assert_ne!(pid, old, "{turn}: the ended connection was handed out");
    }
    common::drop_database(&url, &dir).await;
}
