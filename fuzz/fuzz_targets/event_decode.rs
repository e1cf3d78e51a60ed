//! The log record decoder: input = one stored record (format byte + bincode). A record that
//! decodes must re-encode to a record that decodes to the same event, and must parse without
//! panicking (what every consumer does next).
#![no_main]

use hooklog::event::Event;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = Event::decode(data) {
        let again = Event::decode(&event.encode()).expect("a re-encoded record decodes");
        assert_eq!(again, event);
        let _ = hooklog::parse::parse(&event);
    }
});
