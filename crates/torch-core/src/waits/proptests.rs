//! `would_close` against a brute-force transitive closure on random graphs.

use proptest::prelude::*;

use super::*;

fn node(i: usize) -> Node {
    match i % 3 {
        0 => Node::Operator(format!("op{i}")),
        1 => Node::Help(format!("h{i}")),
        _ => Node::Operator(format!("t{i}")),
    }
}

fn edge(a: usize, b: usize, k: u8) -> WaitEdge {
    let on = match k % 3 {
        0 => WaitOn::Lock {
            lock: format!("l{}", k),
        },
        1 => WaitOn::Task,
        _ => WaitOn::Help,
    };
    WaitEdge {
        from: node(a),
        to: node(b),
        on,
    }
}

/// reach[a][b]: b can be reached from a in one or more steps.
fn closure(n: usize, edges: &[(usize, usize)]) -> Vec<Vec<bool>> {
    let mut r = vec![vec![false; n]; n];
    for &(a, b) in edges {
        r[a][b] = true;
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if r[i][k] && r[k][j] {
                    r[i][j] = true;
                }
            }
        }
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn would_close_matches_brute_force(
        n in 1usize..9,
        raw in prop::collection::vec((0usize..9, 0usize..9, 0u8..9), 0..20),
        new_raw in prop::collection::vec((0usize..9, 0usize..9, 0u8..9), 1..4),
    ) {
        let old: Vec<(usize, usize, u8)> = raw.into_iter().map(|(a, b, k)| (a % n, b % n, k)).collect();
        let new: Vec<(usize, usize, u8)> = new_raw.into_iter().map(|(a, b, k)| (a % n, b % n, k)).collect();
        let g = WaitGraph::of(old.iter().map(|&(a, b, k)| edge(a, b, k)));
        let new_edges: Vec<WaitEdge> = new.iter().map(|&(a, b, k)| edge(a, b, k)).collect();
        let all: Vec<(usize, usize)> = old.iter().chain(new.iter()).map(|&(a, b, _)| (a, b)).collect();
        let reach = closure(n, &all);
        let expect = new.iter().any(|&(a, b, _)| a == b || reach[b][a]);
        let got = g.would_close(&new_edges);
        prop_assert_eq!(got.is_some(), expect);
        if let Some(cycle) = got {
            // Starts with a new edge, is connected, and comes back to its start.
            prop_assert!(new_edges.contains(&cycle[0]));
            for w in cycle.windows(2) {
                prop_assert_eq!(&w[0].to, &w[1].from);
            }
            prop_assert_eq!(&cycle[cycle.len() - 1].to, &cycle[0].from);
            // Every edge is one of the graph's or one of the new ones.
            let known: Vec<WaitEdge> = g.edges().cloned().chain(new_edges.iter().cloned()).collect();
            for e in &cycle {
                prop_assert!(known.contains(e));
            }
        }
    }
}

#[test]
fn nodes_round_trip_and_cycles_read_well() {
    let t = TaskId(uuid::Uuid::from_u128(7));
    for n in [
        Node::Task(t),
        Node::Operator("admin".into()),
        Node::Help("42".into()),
    ] {
        let s = n.to_string();
        assert_eq!(s.parse::<Node>(), Ok(n.clone()));
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Node>(&j).unwrap(), n);
    }
    assert!("nope".parse::<Node>().is_err());
    assert!("task:xyz".parse::<Node>().is_err());
    let a = Node::Operator("a".into());
    let b = Node::Task(t);
    let g = WaitGraph::of([WaitEdge {
        from: b.clone(),
        to: a.clone(),
        on: WaitOn::Task,
    }]);
    let closing = WaitEdge {
        from: a.clone(),
        to: b.clone(),
        on: WaitOn::Lock { lock: "db".into() },
    };
    let cycle = g.would_close(std::slice::from_ref(&closing)).unwrap();
    assert_eq!(cycle.len(), 2);
    let d = Deadlock { cycle };
    let msg = d.to_string();
    assert!(msg.contains("lock \"db\""), "{msg}");
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["cycle"][0]["kind"], "lock");
    assert_eq!(json["cycle"][0]["lock"], "db");
    assert_eq!(json["cycle"][1]["kind"], "task");
}
