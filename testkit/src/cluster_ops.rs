//! What a test does to a running [`RedisCluster`]: find a key's slot and the master
//! serving it, move one slot between masters by hand (`CLUSTER SETSLOT` + `MIGRATE`),
//! fail a master over to its replica, or crash a master (SIGKILL) and bring it back,
//! when it rejoins as a replica.

use std::process::Command;
use std::time::Duration;

use crate::cluster::{cli, settle, RedisCluster};

impl RedisCluster {
    /// A port whose server answers (after a crash, `ports[0]` may be down).
    fn live_port(&self) -> u16 {
        self.ports
            .iter()
            .copied()
            .find(|&p| cli(p, &["PING"]) == "PONG")
            .expect("a live cluster node")
    }

    /// Kills (SIGKILL) the master on `master`, waits until one of its replicas took
    /// over its slots (after `cluster-node-timeout`, 2 s), then starts it again on the
    /// same port and waits until it replicates from the new master. Returns the new
    /// master's port.
    pub fn crash_and_return(&self, master: u16) -> u16 {
        let replica = self.replica_of(master);
        {
            let children = self.children.lock().unwrap();
            let (_, child) = children.iter().rev().find(|(p, _)| *p == master).unwrap();
            let killed = Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(killed.success());
        }
        settle(
            &format!("{replica} promoted after {master} crashed"),
            || {
                cli(replica, &["ROLE"]).starts_with("master")
                    && self
                        .ports
                        .iter()
                        .filter(|&&p| p != master)
                        .all(|&p| cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            },
        );
        self.spawn(master);
        settle(&format!("{master} back as a replica of {replica}"), || {
            let info = cli(master, &["INFO", "replication"]);
            info.contains("role:slave") && info.contains("master_link_status:up")
        });
        replica
    }

    /// The port of a replica of the master on `master`.
    fn replica_of(&self, master: u16) -> u16 {
        self.ports
            .iter()
            .copied()
            .find(|&p| {
                let role = cli(p, &["ROLE"]);
                role.starts_with("slave") && role.contains(&master.to_string())
            })
            .unwrap_or_else(|| panic!("no replica of {master}"))
    }

    /// The hash slot of `key`.
    pub fn slot(&self, key: &str) -> u16 {
        cli(self.live_port(), &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT")
    }

    /// The slot of wiresocket channel `channel` (its keys' `{channel}` hash tag).
    pub fn channel_slot(&self, channel: &str) -> u16 {
        self.slot(&format!("{{{channel}}}"))
    }

    /// The node id of the server on `port`.
    pub fn id(&self, port: u16) -> String {
        cli(port, &["CLUSTER", "MYID"])
    }

    /// The port of the master serving `slot`, as a live node sees it
    /// (`CLUSTER NODES`: `id host:port@bus flags master ... slot-ranges`).
    pub fn owner(&self, slot: u16) -> u16 {
        let out = cli(self.live_port(), &["CLUSTER", "NODES"]);
        for line in out.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || !f[2].contains("master") {
                continue;
            }
            let covers = f[8..].iter().any(|r| {
                let mut it = r.split('-').map(|v| v.parse::<u16>());
                match (it.next(), it.next()) {
                    (Some(Ok(a)), Some(Ok(b))) => a <= slot && slot <= b,
                    (Some(Ok(a)), None) => a == slot,
                    _ => false, // [slot->-id] migration markers
                }
            });
            if covers {
                let port = f[1].split('@').next().and_then(|a| a.rsplit(':').next());
                return port.and_then(|p| p.parse().ok()).expect("host:port");
            }
        }
        panic!("no master serves slot {slot}: {out}")
    }

    /// The masters' ports.
    pub fn masters(&self) -> Vec<u16> {
        self.ports
            .iter()
            .copied()
            .filter(|&p| cli(p, &["ROLE"]).starts_with("master"))
            .collect()
    }

    /// Moves `slot` to the master on `to` by hand: IMPORTING/MIGRATING, `MIGRATE` of its
    /// keys in batches, then `SETSLOT NODE` on every master.
    pub fn migrate_slot(&self, slot: u16, to: u16) {
        let from = self.owner(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let (from_id, to_id) = (self.id(from), self.id(to));
        let s = slot.to_string();
        assert_eq!(
            cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            "OK"
        );
        loop {
            let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &s, "10"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let port = to.to_string();
            let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
            args.extend(keys);
            let out = cli(from, &args);
            assert!(out == "OK" || out == "NOKEY", "MIGRATE: {out}");
            std::thread::sleep(Duration::from_millis(20)); // let publishes interleave
        }
        assert_eq!(cli(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]), "OK");
        assert_eq!(cli(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]), "OK");
        for m in self.masters() {
            if m != from && m != to {
                cli(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            }
        }
        settle(&format!("slot {slot} served by {to}"), || {
            self.owner(slot) == to
        });
    }

    /// Promotes a replica of the master on `master` with `CLUSTER FAILOVER` and waits
    /// until it serves the master's slots; returns the new master's port.
    pub fn failover(&self, master: u16) -> u16 {
        let replica = self.replica_of(master);
        assert_eq!(cli(replica, &["CLUSTER", "FAILOVER"]), "OK");
        settle(&format!("{replica} promoted"), || {
            cli(replica, &["ROLE"]).starts_with("master")
                && self
                    .ports
                    .iter()
                    .all(|&p| cli(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        replica
    }
}
