//! Decimal numbers written into caller buffers, for the code paths that must not
//! allocate (exec in `vfork` children, path building, extended attribute values).

/// Room for any `u64` in decimal.
pub type Digits = [u8; 20];

/// `value` in decimal, as a slice of `buf`.
pub fn decimal(value: u64, buf: &mut Digits) -> &[u8] {
    let mut i = buf.len();
    let mut v = value;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_decimal() {
        let mut buf = Digits::default();
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4294967295, &mut buf), b"4294967295");
        assert_eq!(decimal(u64::MAX, &mut buf), b"18446744073709551615");
    }
}
