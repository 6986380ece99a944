//! Work giving way at the database (`furrow::store::giving_way`, what a large account's sync
//! parts run in) on PostgreSQL: it has connections of its own, so however many of them it holds,
//! everyone else's work still gets the pool's connections, and it never takes more than its own.
//! (SQLite's writer queue is covered by the store's unit tests.)

mod common;

use std::time::Duration;

use common::{fresh_database, Db};
use furrow::store::{giving_way, Store, BULK_CONNECTIONS, POSTGRES_CONNECTIONS};

/// Not the default: the count is the setting's (`database_bulk_connections`).
const BULK: u32 = BULK_CONNECTIONS + 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_giving_way_holds_connections_of_its_own_on_postgres() {
    let (url, _dir) = fresh_database(Db::Postgres).await;
    let store = Store::connect_with(&url, BULK).await.unwrap();
    store.migrate().await.unwrap();

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
}
