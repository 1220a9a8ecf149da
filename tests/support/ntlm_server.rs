//! The server side of NTLM for the test EWS server (filled in with the NTLM support).

pub enum Step {
    /// Send this type 2 (challenge) message, base64.
    Challenge(String),
    /// The handshake ended: whether the client proved the password.
    Done(bool),
}

pub struct Handshake {}

impl Handshake {
    pub fn new(_user: &str, _password: &str) -> Handshake {
        Handshake {}
    }

    pub fn step(&mut self, _token: &str) -> Step {
        Step::Done(false)
    }
}
