//! Splitting a list of messages into several, so that no gRPC message grows past what the
//! other side accepts ([`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE)) however many items
//! have piled up: results held by an executor across a reconnect, assignments with large
//! inputs for an executor with many slots.

/// Bytes of items in one message, at most, for streams between masters and executors (a
/// single larger item goes alone; none is near the limit of 256MiB).
pub const MESSAGE_BYTES: usize = 32 << 20;

/// `items` in order, split into runs of at most `max_bytes` encoded (a larger item alone).
pub fn by_size<T: prost::Message>(items: Vec<T>, max_bytes: usize) -> Vec<Vec<T>> {
    // Nearly always one message: hand the list back as it is, without moving its items.
    let total: usize = items.iter().map(|item| item.encoded_len() + 8).sum();
    if total <= max_bytes {
        return if items.is_empty() { Vec::new() } else { vec![items] };
    }
    let mut runs = Vec::new();
    let (mut run, mut bytes) = (Vec::new(), 0);
    for item in items {
        // The field's tag and length prefix, at most.
        let len = item.encoded_len() + 8;
        if !run.is_empty() && bytes + len > max_bytes {
            runs.push(std::mem::take(&mut run));
            bytes = 0;
        }
        bytes += len;
        run.push(item);
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskResult;

    fn result(task_id: u64, output: usize) -> TaskResult {
        TaskResult { task_id, output: vec![7; output], ..Default::default() }
    }

    #[test]
    fn splits_into_runs_of_bounded_size_in_order() {
        let results: Vec<_> = (0..10).map(|i| result(i, 400)).chain([result(10, 5000), result(11, 10)]).collect();
        let runs = by_size(results, 1000);
        let ids: Vec<Vec<u64>> = runs.iter().map(|b| b.iter().map(|r| r.task_id).collect()).collect();
        assert_eq!(ids, [vec![0, 1], vec![2, 3], vec![4, 5], vec![6, 7], vec![8, 9], vec![10], vec![11]]);
        assert!(by_size(Vec::<TaskResult>::new(), 1000).is_empty());
    }
}
