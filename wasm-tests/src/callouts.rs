//! Answering the filter's callouts from a witnessed log
//! ([`TestLog`], in `mazu-testkit`) the way the curator does: the VM's
//! `GET /v1/checkpoint`, `GET /v1/log/records` and `GET /v1/log/state`
//! get the log's checkpoint (or a note the test chooses), records and
//! follower state.

use mazu_testkit::witnessed::{Request, TestLog, parse_path};

use crate::plugin::Vm;
use crate::state::Callout;

/// A [`TestLog`] answering a VM's callouts.
pub trait AnswerCallouts {
    /// Answers `callout` as an honest curator would at the VM's clock.
    fn answer(&self, vm: &mut Vm, callout: &Callout);

    /// Answers `callout` with `note` for a checkpoint request and with this
    /// log's records for a records request.
    fn answer_with(&self, vm: &mut Vm, callout: &Callout, note: &str);

    /// Ticks until the filter starts a round and answers every callout of
    /// it as an honest curator; returns the callouts answered.
    fn serve(&self, vm: &mut Vm) -> Vec<Callout>;
}

impl AnswerCallouts for TestLog {
    fn answer(&self, vm: &mut Vm, callout: &Callout) {
        let time = vm.now_ms() / 1000;
        self.answer_with(vm, callout, &self.checkpoint(time));
    }

    fn answer_with(&self, vm: &mut Vm, callout: &Callout, note: &str) {
        let body = match parse_path(callout.header(":path").unwrap_or_default()) {
            Request::Checkpoint => note.as_bytes().to_vec(),
            Request::Records { start, end } => self.records_bytes(start, end),
            Request::State { size } => self.state(size),
            Request::Other(path) => panic!("unexpected callout path {path}"),
        };
        vm.respond(callout.token, Some(200), &body)
            .expect("respond");
    }

    fn serve(&self, vm: &mut Vm) -> Vec<Callout> {
        let first = crate::harness::next_callout_full(vm);
        self.answer(vm, &first);
        let mut answered = vec![first];
        while let Some(callout) = vm.take_callouts().pop() {
            self.answer(vm, &callout);
            answered.push(callout);
        }
        answered
    }
}
