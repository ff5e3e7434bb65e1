//! `torch top`: a live terminal view of the fleet, the queue, rates and
//! alerts. Events (long polls on `GET /api/v1/events`) drive the rates and
//! the recent-events pane and trigger a refresh of the snapshots (agents,
//! task counts, alerts), at most every 500 ms and at least every 2 s.
//!
//! The terminal is put in raw mode on the alternate screen and restored on
//! every way out: `q`/Esc/Ctrl-C, an error, a panic (ratatui's hook). A
//! resize redraws at the new size.

mod view;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;
use torch_api::rest::{AgentList, AlertList, EventPage, EventView, TaskList};

use crate::cli::HubArgs;
use crate::client::Client;
use crate::exit::{BAD_INPUT, exit};
use view::View;

/// Snapshots are refreshed at most this often (events trigger a refresh).
const MIN_REFRESH: Duration = Duration::from_millis(500);
/// …and at least this often.
const MAX_REFRESH: Duration = Duration::from_secs(2);

/// What the input thread reports.
enum Input {
    Quit,
    Redraw,
}

pub(crate) async fn run(hub: HubArgs) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        return Err(exit(
            BAD_INPUT,
            "torch top needs a terminal; in scripts use `torch agents list --json`, `torch alerts --json` or `torch watch`",
        ));
    }
    let client = Client::new(&hub.hub, hub.token.clone())?;
    let mut view = View::new(hub.hub.clone());
    // Reach the hub before taking the terminal over: errors print normally.
    refresh(&client, &mut view).await?;
    let tail: EventPage = client.get("/api/v1/events?tail=true").await?;

    let (in_tx, mut in_rx) = mpsc::channel(16);
    std::thread::spawn(move || read_input(in_tx));
    let (ev_tx, mut ev_rx) = mpsc::channel::<Vec<EventView>>(64);
    let follower = tokio::spawn(follow(client.clone(), tail.last_id, ev_tx));

    let mut terminal = ratatui::init();
    let _restore = Restore;
    let mut last_refresh = Instant::now();
    let mut dirty = false;
    let result = loop {
        if let Err(e) = terminal.draw(|f| view.draw(f)) {
            break Err(e.into());
        }
        let due = if dirty { MIN_REFRESH } else { MAX_REFRESH };
        let wait = due.saturating_sub(last_refresh.elapsed());
        tokio::select! {
            i = in_rx.recv() => match i {
                Some(Input::Redraw) => {}
                Some(Input::Quit) | None => break Ok(()),
            },
            e = ev_rx.recv() => match e {
                Some(events) => {
                    view.events(events, Instant::now());
                    dirty = true;
                }
                None => view.status = Some("event stream ended; retrying snapshots only".into()),
            },
            _ = tokio::time::sleep(wait) => {
                match refresh(&client, &mut view).await {
                    Ok(()) => view.status = None,
                    Err(e) => view.status = Some(format!("{e:#}")),
                }
                last_refresh = Instant::now();
                dirty = false;
            }
        }
    };
    follower.abort();
    result
}

/// Leaves raw mode and the alternate screen when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Reads keys and resizes on a thread of its own (crossterm's reads block).
fn read_input(tx: mpsc::Sender<Input>) {
    loop {
        if tx.is_closed() {
            return;
        }
        match event::poll(Duration::from_millis(200)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => {
                let _ = tx.blocking_send(Input::Quit);
                return;
            }
        }
        let input = match event::read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                KeyCode::Char('q') | KeyCode::Esc => Input::Quit,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Input::Quit,
                _ => continue,
            },
            Ok(Event::Resize(..)) => Input::Redraw,
            Ok(_) => continue,
            Err(_) => Input::Quit,
        };
        if tx.blocking_send(input).is_err() {
            return;
        }
    }
}

/// Follows every stream from `after`, sending each non-empty page; on an
/// error it waits a second and asks again (the view shows snapshot errors).
async fn follow(client: Client, mut after: u64, tx: mpsc::Sender<Vec<EventView>>) {
    loop {
        let path = format!("/api/v1/events?after={after}&wait_ms=1000&limit=1000");
        match client.get::<EventPage>(&path).await {
            Ok(page) => {
                after = page.last_id;
                if !page.events.is_empty() && tx.send(page.events).await.is_err() {
                    return;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Reads the snapshots: agents, task counts, alerts.
async fn refresh(client: &Client, view: &mut View) -> Result<()> {
    let (agents, tasks, alerts) = tokio::try_join!(
        client.get::<AgentList>("/api/v1/agents"),
        client.get::<TaskList>("/api/v1/tasks?limit=1"),
        client.get::<AlertList>("/api/v1/alerts"),
    )?;
    view.agents = agents.agents;
    view.counts = tasks.counts;
    view.alerts = alerts;
    Ok(())
}
