//! Bytes → `source::MboxReader`, read to the end.
//!
//! Checked on every input: no panic, no I/O error from an in-memory reader, and the messages
//! together are never longer than the input (separators and `>From ` quoting only ever
//! remove bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailsync::source::MboxReader;

fuzz_target!(|data: &[u8]| {
    let mut total_bytes = 0usize;
    for (index, message) in MboxReader::new(data).enumerate() {
        let message = message.expect("reading from memory cannot fail");
        assert_eq!(
            message.source_id,
            (index + 1).to_string(),
            "messages are numbered from 1 in order"
        );
        total_bytes += message.raw.len();
        assert!(
            total_bytes <= data.len(),
            "messages hold {total_bytes} bytes, more than the {}-byte input",
            data.len()
        );
    }
});
