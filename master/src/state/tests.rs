//! Unit tests of the pure state machine, with plain values.

use wasmgrid_common::Digest;

use super::*;

const MIB: u64 = 1024 * 1024;

pub(crate) fn module() -> Digest {
    Digest::of(b"module")
}

pub(crate) fn spec(memory_mib: u64, priority: i32) -> TaskSpec {
    TaskSpec {
        module: module(),
        limits: Limits { fuel: 0, memory: memory_mib * MIB, timeout_ms: 1000 },
        max_attempts: 2,
        priority,
        args: vec![],
        env: vec![],
    }
}

struct World {
    sm: StateMachine,
    now: i64,
}

impl World {
    fn new() -> Self {
        let mut w = Self { sm: StateMachine::new(), now: 1_000 };
        let meta = ModuleMeta { digest: module(), size: 1, kind: ModuleKind::Component, created_at_ms: 0 };
        w.apply(vec![Command::PutModule(meta), Command::TrackShortRuns]);
        w
    }

    fn apply(&mut self, commands: Vec<Command>) -> (Vec<Response>, Effects) {
        self.now += 10;
        let mut fx = Effects::default();
        let r = self.sm.apply(Batch { at_ms: self.now, commands }, &mut fx);
        (r, fx)
    }

    fn register(&mut self, name: &str, slots: u32, memory_mib: u64, incarnation: u64) -> Effects {
        let cmd = Command::Register {
            name: name.into(),
            addr: format!("{name}:1"),
            incarnation,
            slots,
            memory: memory_mib * MIB,
            lease_ms: 1000,
        };
        self.apply(vec![cmd]).1
    }

    fn submit(&mut self, specs: Vec<TaskSpec>) -> (Vec<TaskId>, Effects) {
        let tasks = specs.into_iter().map(|spec| NewTask { spec, input: b"in".to_vec() }).collect();
        let (r, fx) = self.apply(vec![Command::Submit { request_id: None, tasks, max_pending: None }]);
        match &r[0] {
            Response::Submitted(ids) => (ids.clone(), fx),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn report(&mut self, task: TaskId, attempt: u32, executor: &str, failure: Option<Failure>) -> Effects {
        self.report_took(task, attempt, executor, failure, 3)
    }

    fn report_took(
        &mut self,
        task: TaskId,
        attempt: u32,
        executor: &str,
        failure: Option<Failure>,
        duration_ms: u64,
    ) -> Effects {
        let report = Report {
            task,
            attempt,
            executor: executor.into(),
            failure,
            output: TaskOutput { output: b"out".to_vec(), stderr: vec![] },
            fuel_consumed: 7,
            duration_ms,
            exit_code: None,
            stderr_truncated: false,
        };
        self.apply(vec![Command::Finish(vec![report])]).1
    }

    fn state(&self, id: TaskId) -> Option<TaskState> {
        self.sm.live_task(id).map(|t| t.state)
    }
}

fn placed(fx: &Effects) -> Vec<(TaskId, String)> {
    fx.dispatch.iter().map(|d| (d.task, d.executor.clone())).collect()
}

#[test]
fn tasks_wait_for_an_executor_then_run_and_finish_once() {
    let mut w = World::new();
    let (ids, fx) = w.submit(vec![spec(16, 0)]);
    assert!(fx.dispatch.is_empty());
    assert_eq!(fx.inputs.len(), 1);
    let t = w.sm.live_task(ids[0]).unwrap();
    assert_eq!(w.sm.pending_reason(t), "no executor is available");

    let fx = w.register("e1", 1, 256, 1);
    assert_eq!(placed(&fx), vec![(ids[0], "e1".to_string())]);
    assert_eq!(fx.dispatch[0].attempt, 1);
    assert_eq!(w.state(ids[0]), Some(TaskState::Running));

    let fx = w.report(ids[0], 1, "e1", None);
    assert_eq!(fx.finished.len(), 1);
    assert_eq!(fx.finished[0].state, TaskState::Succeeded);
    assert_eq!(fx.finished[0].fuel_consumed, 7);
    assert_eq!(fx.outputs[0].1.output, b"out");
    assert_eq!(fx.acks.len(), 1);
    assert_eq!(w.state(ids[0]), None, "finished tasks leave memory");

    // A duplicate report is acknowledged but changes nothing.
    let fx = w.report(ids[0], 1, "e1", Some(Failure::new(FailureKind::Trap, "late")));
    assert!(fx.finished.is_empty());
    assert_eq!(fx.acks.len(), 1);
    assert_eq!(w.sm.executor("e1").unwrap().free_slots(), 1);
}

#[test]
fn reports_from_an_older_attempt_or_another_executor_are_ignored() {
    let mut w = World::new();
    w.register("e1", 1, 256, 1);
    let (ids, _) = w.submit(vec![spec(16, 0)]);
    let fx = w.report(ids[0], 2, "e1", None);
    assert!(fx.finished.is_empty());
    let fx = w.report(ids[0], 1, "e2", None);
    assert!(fx.finished.is_empty());
    assert_eq!(w.state(ids[0]), Some(TaskState::Running));
}

#[test]
fn higher_priority_first_then_fifo() {
    let mut w = World::new();
    let (ids, _) = w.submit(vec![spec(1, 0), spec(1, 0), spec(1, 5)]);
    let fx = w.register("e1", 1, 256, 1);
    assert_eq!(placed(&fx), vec![(ids[2], "e1".into())]);
    let fx = w.report(ids[2], 1, "e1", None);
    assert_eq!(placed(&fx), vec![(ids[0], "e1".into())]);
    let fx = w.report(ids[0], 1, "e1", None);
    assert_eq!(placed(&fx), vec![(ids[1], "e1".into())]);
}

#[test]
fn work_spreads_over_executors_and_never_exceeds_slots() {
    let mut w = World::new();
    w.register("a", 2, 1024, 1);
    w.register("b", 2, 1024, 1);
    let (_, fx) = w.submit((0..6).map(|_| spec(1, 0)).collect());
    let on_a = fx.dispatch.iter().filter(|d| d.executor == "a").count();
    let on_b = fx.dispatch.iter().filter(|d| d.executor == "b").count();
    assert_eq!((on_a, on_b), (2, 2));
    assert_eq!(w.sm.pending_count(), 2);
    let t = w.sm.live_tasks().find(|t| t.state == TaskState::Pending).unwrap();
    assert_eq!(w.sm.pending_reason(t), "waiting for a free slot");
}

#[test]
fn a_task_too_big_for_any_executor_waits_with_a_reason_without_blocking_others() {
    let mut w = World::new();
    w.register("small", 4, 64, 1);
    let (ids, fx) = w.submit(vec![spec(900 * 1024, 9), spec(16, 0)]);
    assert_eq!(placed(&fx), vec![(ids[1], "small".into())]);
    let big = w.sm.live_task(ids[0]).unwrap();
    assert_eq!(w.sm.pending_reason(big), "needs 900GiB of memory, largest executor has 64MiB");
    let fx = w.register("big", 1, 1024 * 1024, 1);
    assert_eq!(placed(&fx), vec![(ids[0], "big".into())]);
}

#[test]
fn any_number_of_tasks_too_big_for_every_executor_hold_back_none_behind_them() {
    let mut w = World::new();
    w.register("e", 2, 64, 1);
    let (big, fx) = w.submit((0..2000).map(|_| spec(1024, 0)).collect());
    assert!(fx.dispatch.is_empty());
    let (small, fx) = w.submit(vec![spec(16, 0)]);
    assert_eq!(placed(&fx), vec![(small[0], "e".into())]);
    assert_eq!(w.sm.pending_count(), 2000);
    // A big enough executor gets them, in order.
    let fx = w.register("big", 2, 4096, 1);
    assert_eq!(placed(&fx), vec![(big[0], "big".into()), (big[1], "big".into())]);
}

#[test]
fn memory_is_reserved_per_task() {
    let mut w = World::new();
    w.register("e", 8, 100, 1);
    let (_, fx) = w.submit(vec![spec(60, 0), spec(60, 0), spec(30, 0)]);
    assert_eq!(fx.dispatch.len(), 2, "60 + 30 fit in 100, 60 + 60 do not");
    assert_eq!(w.sm.executor("e").unwrap().memory_reserved, 90 * MIB);
}

#[test]
fn cancel_pending_running_finished_and_unknown() {
    let mut w = World::new();
    w.register("e", 1, 256, 1);
    let (ids, _) = w.submit(vec![spec(1, 0), spec(1, 0)]);
    let (r, fx) = w.apply(vec![Command::Cancel(ids[1])]);
    assert_eq!(r[0], Response::Done);
    assert_eq!(fx.finished[0].state, TaskState::Cancelled);
    assert_eq!(fx.finished[0].error.as_ref().unwrap().kind, FailureKind::Cancelled);
    assert!(fx.stop.is_empty());

    let started = w.sm.live_task(ids[0]).unwrap().started_at_ms;
    let (_, fx) = w.apply(vec![Command::Cancel(ids[0])]);
    assert_eq!(fx.stop, vec![("e".to_string(), RunRef { task: ids[0], attempt: 1 })]);
    assert_eq!(w.sm.executor("e").unwrap().free_slots(), 1);
    assert_eq!(fx.finished[0].duration_ms, u64::try_from(w.now - started).unwrap(), "the time it ran until cancelled");

    let (r, _) = w.apply(vec![Command::Cancel(ids[0])]);
    assert_eq!(r[0], Response::Refused(Refusal::AlreadyFinished(ids[0])));
    let (r, _) = w.apply(vec![Command::Cancel(999)]);
    assert_eq!(r[0], Response::Refused(Refusal::TaskNotFound(999)));
}

#[test]
fn a_lost_executor_moves_its_tasks_and_counts_attempts() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    let (ids, _) = w.submit(vec![spec(1, 0)]);
    w.register("b", 1, 256, 1);
    let (_, fx) = w.apply(vec![Command::ExecutorLost { name: "a".into(), incarnation: 1 }]);
    assert_eq!(placed(&fx), vec![(ids[0], "b".into())]);
    assert_eq!(fx.dispatch[0].attempt, 2);
    assert_eq!(w.sm.executor("a").unwrap().state, ExecutorState::Lost);

    // Out of attempts (max 2): the task fails as executor_lost.
    let (_, fx) = w.apply(vec![Command::ExecutorLost { name: "b".into(), incarnation: 1 }]);
    assert_eq!(fx.finished[0].error.as_ref().unwrap().kind, FailureKind::ExecutorLost);
    assert!(fx.finished[0].error.as_ref().unwrap().message.ends_with("gave up after 2 attempts"));
    assert_eq!(fx.finished[0].attempts, 2);

    // The first executor's late report changes nothing.
    let fx = w.report(ids[0], 1, "a", None);
    assert!(fx.finished.is_empty());
}

#[test]
fn a_stale_lost_notice_for_an_old_incarnation_is_ignored() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    w.register("a", 1, 256, 2);
    w.apply(vec![Command::ExecutorLost { name: "a".into(), incarnation: 1 }]);
    assert_eq!(w.sm.executor("a").unwrap().state, ExecutorState::Alive);
}

#[test]
fn a_restarted_executor_loses_its_old_runs() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    let (ids, _) = w.submit(vec![spec(1, 0)]);
    let fx = w.register("a", 1, 256, 2);
    assert_eq!(placed(&fx), vec![(ids[0], "a".into())]);
    assert_eq!(fx.dispatch[0].attempt, 2);
    // Reconnecting with the same incarnation keeps the run.
    let fx = w.register("a", 1, 256, 2);
    assert!(fx.dispatch.is_empty());
    assert_eq!(w.state(ids[0]), Some(TaskState::Running));
}

#[test]
fn an_executor_lost_failure_is_retried_others_are_final() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    let (ids, _) = w.submit(vec![spec(1, 0), spec(1, 0)]);
    let fx = w.report(ids[0], 1, "a", Some(Failure::new(FailureKind::ExecutorLost, "fetch failed")));
    assert_eq!(w.state(ids[0]), Some(TaskState::Running));
    assert_eq!(fx.dispatch[0].attempt, 2);
    let fx = w.report(ids[0], 2, "a", Some(Failure::new(FailureKind::Trap, "unreachable")));
    assert_eq!(fx.finished[0].state, TaskState::Failed);
    assert_eq!(fx.finished[0].error.as_ref().unwrap().kind, FailureKind::Trap);
}

#[test]
fn a_retried_submit_returns_the_same_tasks_until_the_key_expires() {
    let mut w = World::new();
    let key = Some([7u8; 16]);
    let submit = |w: &mut World| {
        let tasks = vec![NewTask { spec: spec(1, 0), input: vec![] }];
        w.apply(vec![Command::Submit { request_id: key, tasks, max_pending: None }]).0
    };
    let first = submit(&mut w);
    assert_eq!(submit(&mut w), first);
    assert_eq!(w.sm.pending_count(), 1);
    w.now += REQUEST_MEMORY_MS;
    let (_, fx) = w.apply(vec![]);
    assert_eq!(fx.requests_expired, vec![[7u8; 16]]);
    assert_ne!(submit(&mut w), first);
}

#[test]
fn request_keys_are_remembered_in_log_order_when_a_leaders_clock_is_behind() {
    let mut w = World::new();
    let submit = |w: &mut World, key: u8| {
        let tasks = vec![NewTask { spec: spec(1, 0), input: vec![] }];
        w.apply(vec![Command::Submit { request_id: Some([key; 16]), tasks, max_pending: None }]).1
    };
    submit(&mut w, 1);
    let first = w.now;
    w.now = first - 20; // the next leader's clock is behind: its entry is stamped first - 10
    let fx = submit(&mut w, 2);
    // Stored no earlier than the key before it, a replica restored from storage (which sorts
    // the keys by time) expires them at the same entries as this one.
    assert_eq!(fx.requests_added[0].2, first);
    w.now = first + REQUEST_MEMORY_MS - 20;
    assert!(w.apply(vec![]).1.requests_expired.is_empty());
    w.now = first + REQUEST_MEMORY_MS - 10;
    assert_eq!(w.apply(vec![]).1.requests_expired, vec![[1u8; 16], [2u8; 16]]);
}

#[test]
fn unknown_modules_are_refused() {
    let mut w = World::new();
    let mut s = spec(1, 0);
    s.module = Digest::of(b"other");
    let tasks = vec![NewTask { spec: s, input: vec![] }];
    let (r, fx) = w.apply(vec![Command::Submit { request_id: None, tasks, max_pending: None }]);
    assert!(matches!(r[0], Response::Refused(Refusal::UnknownModule(_))));
    assert!(fx.inputs.is_empty());
}

#[test]
fn restore_rebuilds_the_queue_and_the_load() {
    let mut w = World::new();
    w.register("a", 2, 256, 1);
    let (ids, _) = w.submit(vec![spec(10, 0), spec(10, 0), spec(10, 0)]);
    let live: Vec<TaskRecord> = w.sm.live_tasks().cloned().collect();
    let restored = StateMachine::restore(
        w.sm.next_task_id(),
        w.sm.modules().cloned(),
        w.sm.executors().cloned(),
        live,
        vec![],
        Default::default(),
        w.sm.short_runs().cloned(),
    );
    assert_eq!(restored.pending_count(), 1);
    assert_eq!(restored.executor("a").unwrap().running.len(), 2);
    assert_eq!(restored.executor("a").unwrap().memory_reserved, 20 * MIB);
    let mut w2 = World { sm: restored, now: w.now };
    let fx = w2.report(ids[0], 1, "a", None);
    assert_eq!(placed(&fx), vec![(ids[2], "a".into())]);
}

#[test]
fn a_disconnected_executor_gets_no_new_tasks_until_it_registers_again() {
    let mut w = World::new();
    w.register("a", 2, 256, 1);
    let (first, _) = w.submit(vec![spec(1, 0)]);
    let (_, fx) = w.apply(vec![Command::Disconnected { name: "a".into(), incarnation: 1 }]);
    assert!(fx.stop.is_empty(), "running tasks stay while the lease lasts");
    assert_eq!(w.state(first[0]), Some(TaskState::Running));
    let (second, fx) = w.submit(vec![spec(1, 0)]);
    assert!(fx.dispatch.is_empty());
    assert_eq!(w.sm.pending_reason(w.sm.live_task(second[0]).unwrap()), "no executor is available");
    let fx = w.register("a", 2, 256, 1);
    assert_eq!(placed(&fx), vec![(second[0], "a".into())]);
    assert_eq!(w.state(first[0]), Some(TaskState::Running));
}

#[test]
fn the_pending_queue_is_bounded() {
    let mut w = World::new();
    let submit = |w: &mut World, n: usize| {
        let tasks = (0..n).map(|_| NewTask { spec: spec(1, 0), input: vec![] }).collect();
        w.apply(vec![Command::Submit { request_id: None, tasks, max_pending: Some(3) }]).0.remove(0)
    };
    assert!(matches!(submit(&mut w, 2), Response::Submitted(_)));
    assert_eq!(submit(&mut w, 2), Response::Refused(Refusal::QueueFull { pending: 2, adding: 2, limit: 3 }));
    assert!(matches!(submit(&mut w, 1), Response::Submitted(_)));
    // Running tasks do not count: once placed, the queue has room again.
    w.register("e", 3, 256, 1);
    assert!(matches!(submit(&mut w, 3), Response::Submitted(_)));
}

#[test]
fn a_draining_executor_stays_draining_when_it_reconnects_and_not_when_it_restarts() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    w.apply(vec![Command::Drain("a".into())]);
    w.register("a", 1, 256, 1);
    assert_eq!(w.sm.executor("a").unwrap().state, ExecutorState::Draining);
    let (_, fx) = w.submit(vec![spec(1, 0)]);
    assert!(fx.dispatch.is_empty(), "nothing new for a draining executor");
    let fx = w.register("a", 1, 256, 2);
    assert_eq!(w.sm.executor("a").unwrap().state, ExecutorState::Alive);
    assert_eq!(fx.dispatch.len(), 1, "a new process under the name is not draining");
}

#[test]
fn a_draining_executor_gets_nothing_new_and_its_runs_move_when_it_leaves() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    let (first, _) = w.submit(vec![spec(1, 0)]);
    let (_, fx) = w.apply(vec![Command::Drain("a".into())]);
    assert!(fx.stop.is_empty(), "running work finishes");
    assert_eq!(w.sm.executor("a").unwrap().state, ExecutorState::Draining);
    let (second, fx) = w.submit(vec![spec(1, 0)]);
    assert!(fx.dispatch.is_empty());
    w.register("b", 1, 256, 1);
    let (_, fx) = w.apply(vec![Command::Deregister { name: "a".into(), incarnation: 1 }]);
    assert!(w.sm.executor("a").is_none());
    assert_eq!(fx.executors_removed, vec!["a".to_string()]);
    // b was busy with the second task; the first one waits for it.
    assert!(fx.dispatch.is_empty());
    assert_eq!(w.state(first[0]), Some(TaskState::Pending));
    assert_eq!(w.state(second[0]), Some(TaskState::Running));
    let (r, _) = w.apply(vec![Command::Drain("nope".into())]);
    assert_eq!(r[0], Response::Refused(Refusal::ExecutorNotFound("nope".into())));
}

#[test]
fn an_overdue_run_is_expired_as_a_timeout_once() {
    let mut w = World::new();
    w.register("a", 1, 256, 1);
    let (ids, _) = w.submit(vec![spec(1, 0)]);
    let started = w.sm.live_task(ids[0]).unwrap().started_at_ms;
    let placed = |_: &ExecutorRecord, _: RunRef, placed_ms: i64| Some(placed_ms);
    assert!(w.sm.overdue(started + 1000, 500, placed).is_empty());
    assert_eq!(w.sm.overdue(started + 1501, 500, placed), vec![(ids[0], 1)]);
    // Reported waiting for a slot until later: its timeout counts from then.
    let waited = |e: &ExecutorRecord, run: RunRef, _| (e.name == "a" && run.task == ids[0]).then_some(started + 700);
    assert!(w.sm.overdue(started + 1501, 500, waited).is_empty());
    assert_eq!(w.sm.overdue(started + 2201, 500, waited), vec![(ids[0], 1)]);
    // Not heard from: its lease decides, not its timeout.
    assert!(w.sm.overdue(started + 100_000, 500, |_, _, _| None).is_empty());
    let (_, fx) = w.apply(vec![Command::Expire { task: ids[0], attempt: 1 }]);
    assert_eq!(fx.finished[0].error.as_ref().unwrap().kind, FailureKind::Timeout);
    assert_eq!(fx.stop, vec![("a".to_string(), RunRef { task: ids[0], attempt: 1 })]);
    let fx = w.report(ids[0], 1, "a", None);
    assert!(fx.finished.is_empty(), "the late result changes nothing");
    let (_, fx) = w.apply(vec![Command::Expire { task: ids[0], attempt: 1 }]);
    assert!(fx.finished.is_empty());
}

fn ran(request_id: Option<RequestId>, executor: &str, failure: Option<Failure>) -> Command {
    let report = Report {
        task: 0,
        attempt: 0,
        executor: executor.into(),
        failure,
        output: TaskOutput { output: b"out".to_vec(), stderr: b"err".to_vec() },
        fuel_consumed: 7,
        duration_ms: 3,
        exit_code: Some(0),
        stderr_truncated: false,
    };
    Command::Ran { request_id, task: NewTask { spec: spec(1, 0), input: b"in".to_vec() }, report: Box::new(report) }
}

#[test]
fn a_task_that_ran_is_submitted_and_finished_at_once() {
    let mut w = World::new();
    w.register("e1", 2, 1024, 1);
    let (r, fx) = w.apply(vec![ran(Some([1; 16]), "e1", None)]);
    assert_eq!(r, vec![Response::Submitted(vec![1])]);
    assert_eq!(fx.inputs, vec![(1, b"in".to_vec())]);
    assert_eq!(fx.outputs, vec![(1, TaskOutput { output: b"out".to_vec(), stderr: b"err".to_vec() })]);
    let t = &fx.finished[0];
    assert_eq!((t.id, t.state, t.attempts, t.executor.as_deref()), (1, TaskState::Succeeded, 1, Some("e1")));
    assert_eq!((t.fuel_consumed, t.exit_code, t.started_at_ms), (7, Some(0), t.finished_at_ms - 3));
    assert_eq!(t.created_at_ms, t.started_at_ms);
    assert!(fx.dispatch.is_empty() && fx.acks.is_empty());
    assert_eq!((w.sm.pending_count(), w.sm.running_count()), (0, 0));
    assert_eq!(w.sm.executor("e1").unwrap().free_slots(), 2);

    // The same request again (a client retrying) answers with the first task; nothing runs.
    let (r, fx) = w.apply(vec![ran(Some([1; 16]), "e1", None)]);
    assert_eq!(r, vec![Response::Submitted(vec![1])]);
    assert!(fx.finished.is_empty() && fx.inputs.is_empty());
    assert_eq!(w.sm.next_task_id(), 2);
}

#[test]
fn a_trial_the_executor_lost_is_queued_like_a_submit() {
    let mut w = World::new();
    w.register("e1", 2, 1024, 1);
    let lost = Failure::new(FailureKind::ExecutorLost, "gone");
    let (r, fx) = w.apply(vec![ran(None, "e1", Some(lost))]);
    assert_eq!(r, vec![Response::Submitted(vec![1])]);
    assert!(fx.finished.is_empty());
    assert_eq!(fx.dispatch.len(), 1, "placed again at once");
    assert_eq!(w.sm.live_task(1).map(|t| (t.state, t.attempts)), Some((TaskState::Running, 2)));
}

/// Runs `spec` on `executor` (alone on it) `n` times, each reported as taking `duration_ms`.
fn run_times(w: &mut World, executor: &str, spec: &TaskSpec, n: u32, duration_ms: u64) {
    for _ in 0..n {
        let (ids, _) = w.submit(vec![spec.clone()]);
        assert_eq!(w.state(ids[0]), Some(TaskState::Running));
        w.report_took(ids[0], 1, executor, None, duration_ms);
    }
}

/// A world with executor `e` (one slot, `memory_mib` of memory) where the test module runs
/// short, and the spec of a task of it.
fn short_module_world(memory_mib: u64) -> (World, TaskSpec) {
    let mut w = World::new();
    w.register("e", 1, memory_mib, 1);
    let short = spec(16, 0);
    run_times(&mut w, "e", &short, short_runs::STREAK, 1);
    (w, short)
}

fn other_module(w: &mut World) -> TaskSpec {
    let digest = Digest::of(b"other");
    w.apply(vec![Command::PutModule(ModuleMeta { digest, size: 1, kind: ModuleKind::Component, created_at_ms: 0 })]);
    TaskSpec { module: digest, ..spec(16, 0) }
}

#[test]
fn a_short_modules_tasks_queue_at_executors_beyond_their_slots_up_to_a_bound() {
    let mut w = World::new();
    w.register("e", 1, 64 * 1024, 1);
    let short = spec(16, 0);
    run_times(&mut w, "e", &short, short_runs::STREAK - 1, 1);
    let (ids, _) = w.submit(vec![short.clone(), short.clone()]);
    assert_eq!(w.state(ids[1]), Some(TaskState::Pending), "not short yet: one slot, one run");
    w.report(ids[0], 1, "e", None);
    w.report(ids[1], 1, "e", None);
    assert!(w.sm.runs_short(&module()));

    let n = super::executor::EXECUTOR_QUEUE as usize + 10;
    let (ids, fx) = w.submit(vec![short.clone(); n]);
    let running = ids.iter().filter(|id| w.state(**id) == Some(TaskState::Running)).count();
    assert_eq!(running, 1 + super::executor::EXECUTOR_QUEUE as usize, "one slot and the queue");
    assert_eq!(fx.queued.len(), super::executor::EXECUTOR_QUEUE as usize, "all but the first wait there");
    assert_eq!(fx.queued[0], ("e".to_string(), RunRef { task: ids[1], attempt: 1 }));
    let other = other_module(&mut w);
    let (late, _) = w.submit(vec![other]);
    assert_eq!(w.state(late[0]), Some(TaskState::Pending), "a task not known short waits for a slot");

    // One long run ends the streak: the rest wait for slots again.
    w.report_took(ids[0], 1, "e", None, short_runs::SHORT_MS + 1);
    assert!(!w.sm.runs_short(&module()));
    let running_after = w.sm.executor("e").unwrap().running.len();
    assert_eq!(running_after, running - 1, "nothing new is queued once the module runs long");
}

#[test]
fn no_short_task_passes_a_task_that_waits_for_a_slot() {
    let (mut w, short) = short_module_world(64 * 1024);
    let (first, _) = w.submit(vec![short.clone()]);
    let other = other_module(&mut w);
    let (long, _) = w.submit(vec![other]);
    let (behind, _) = w.submit(vec![short.clone(), short.clone()]);
    assert_eq!(w.state(long[0]), Some(TaskState::Pending));
    assert!(behind.iter().all(|id| w.state(*id) == Some(TaskState::Pending)), "queued behind the long task");

    // The slot frees: the long task takes it, and the short ones may queue behind it again.
    let fx = w.report(first[0], 1, "e", None);
    assert_eq!(placed(&fx).first(), Some(&(long[0], "e".to_string())));
    assert!(behind.iter().all(|id| w.state(*id) == Some(TaskState::Running)));
}

#[test]
fn a_task_too_big_for_every_executor_does_not_stop_short_tasks_from_queueing() {
    let (mut w, short) = short_module_world(1024);
    let too_big = TaskSpec { limits: Limits { memory: 4096 * MIB, ..short.limits }, ..other_module(&mut w) };
    let (big, _) = w.submit(vec![too_big]);
    let (behind, _) = w.submit(vec![short.clone(); 3]);
    assert_eq!(w.state(big[0]), Some(TaskState::Pending));
    assert!(behind.iter().all(|id| w.state(*id) == Some(TaskState::Running)), "queued past it");
    // One that fits the executor once its memory frees stops them, like one waiting for a slot.
    let fits_later = TaskSpec { limits: Limits { memory: 1000 * MIB, ..short.limits }, ..other_module(&mut w) };
    let (fits_later, _) = w.submit(vec![fits_later]);
    let (after, _) = w.submit(vec![short.clone()]);
    assert_eq!(w.state(fits_later[0]), Some(TaskState::Pending));
    assert_eq!(w.state(after[0]), Some(TaskState::Pending), "does not pass the task waiting for memory");
}

#[test]
fn a_run_expired_past_its_timeout_ends_the_streak() {
    let (mut w, short) = short_module_world(1024);
    assert!(w.sm.runs_short(&module()));
    let (ids, _) = w.submit(vec![short]);
    w.apply(vec![Command::Expire { task: ids[0], attempt: 1 }]);
    assert!(!w.sm.runs_short(&module()));
}

#[test]
fn a_run_given_back_before_it_started_runs_again_without_using_an_attempt() {
    let mut w = World::new();
    w.register("e1", 1, 256, 1);
    let (ids, fx) = w.submit(vec![TaskSpec { max_attempts: 1, ..spec(16, 0) }]);
    assert_eq!(placed(&fx), vec![(ids[0], "e1".to_string())]);

    // Back on the same executor (it gave the run back on losing its masters, not draining):
    // a new attempt, one more allowed.
    let give_back = || Command::GiveBack { executor: "e1".into(), runs: vec![RunRef { task: ids[0], attempt: 1 }] };
    let (_, fx) = w.apply(vec![give_back()]);
    assert_eq!(fx.acks, vec![("e1".to_string(), RunRef { task: ids[0], attempt: 1 })]);
    assert_eq!(placed(&fx), vec![(ids[0], "e1".to_string())]);
    assert_eq!(fx.dispatch[0].attempt, 2, "attempt numbers stay the runs' fencing tokens");
    assert_eq!(w.sm.live_task(ids[0]).unwrap().spec.max_attempts, 2);

    // Whatever is said late about attempt 1 leaves attempt 2 alone.
    let (_, fx) = w.apply(vec![give_back(), Command::Expire { task: ids[0], attempt: 1 }]);
    assert!(fx.dispatch.is_empty() && fx.changed.is_empty() && fx.finished.is_empty());
    let fx = w.report(ids[0], 1, "e1", Some(Failure::new(FailureKind::Trap, "late")));
    assert!(fx.finished.is_empty());
    assert_eq!(w.state(ids[0]), Some(TaskState::Running));

    // Lost with its one real attempt used, it fails as before.
    w.register("e1", 1, 256, 2);
    assert_eq!(w.state(ids[0]), None, "a new incarnation: the run is lost and the task out of attempts");
}
