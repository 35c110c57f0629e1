//! Kafka's framing: a big-endian i32 size, then that many bytes (request or response).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Kafka's own default bound for a request (`socket.request.max.bytes`, 100 MiB).
pub const MAX_FRAME: usize = 100 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit of {MAX_FRAME}")]
    TooLarge(i64),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The next frame's bytes (without the size), or `None` at a clean end of stream.
pub async fn read(reader: &mut (impl AsyncRead + Unpin)) -> Result<Option<Bytes>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let len = usize::try_from(size)
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or(FrameError::TooLarge(i64::from(size)))?;
    let mut body = BytesMut::zeroed(len);
    reader.read_exact(&mut body).await?;
    Ok(Some(body.freeze()))
}

pub async fn write(writer: &mut (impl AsyncWrite + Unpin), body: &[u8]) -> Result<(), FrameError> {
    let size = i32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len() as i64))?;
    writer.write_all(&size.to_be_bytes()).await?;
    writer.write_all(body).await?;
    Ok(())
}

/// The api key, api version and correlation id at the start of every request.
pub fn request_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let b = frame.get(..8)?;
    Some((
        i16::from_be_bytes([b[0], b[1]]),
        i16::from_be_bytes([b[2], b[3]]),
        i32::from_be_bytes([b[4], b[5], b[6], b[7]]),
    ))
}

/// The correlation id at the start of every response.
pub fn response_correlation(frame: &[u8]) -> Option<i32> {
    let b = frame.get(..4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}
