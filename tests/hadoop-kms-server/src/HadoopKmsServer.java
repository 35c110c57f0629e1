import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.BufferedInputStream;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.crypto.key.JavaKeyStoreProvider;
import org.apache.hadoop.crypto.key.KeyProvider;
import org.apache.hadoop.crypto.key.KeyProviderCryptoExtension;
import org.apache.hadoop.crypto.key.KeyProviderCryptoExtension.EncryptedKeyVersion;
import org.apache.hadoop.util.KMSUtil;

/**
 * TEST INFRASTRUCTURE, NOT A PRODUCT: a stand-in for the Apache Hadoop KMS server, because no
 * Hadoop KMS distribution can be installed on our machines.
 *
 * <p>It serves the KMS v1 REST API ({@code /kms/v1/...}) over plain HTTP on loopback and does
 * every key operation and all cryptography through Hadoop's own classes: a jceks
 * {@link JavaKeyStoreProvider} wrapped in {@link KeyProviderCryptoExtension} (the same pairing
 * the real KMS uses), with request/response JSON built by Hadoop's {@link KMSUtil}. What it
 * does not have: Kerberos/SPNEGO, delegation tokens, key ACLs, audit logs, HA, the server-side
 * EEK cache. Authentication is Hadoop's "simple" scheme: a {@code user.name} query parameter,
 * answered with a signed {@code hadoop.auth} cookie that later requests may present instead.
 * The test suite checks it against Hadoop's own client (KMSClientProvider and KeyShell).
 *
 * <p>Usage: {@code java -cp <hadoop jars>:<classes> HadoopKmsServer <host> <port> <keystore.jceks>
 * [<tls-port> <tls-dir>]} with the keystore password in {@code HADOOP_KEYSTORE_PASSWORD}; the
 * optional second listener serves the same KMS over HTTPS and requires a client certificate.
 */
public final class HadoopKmsServer {
  private static final String PREFIX = "/kms/v1/";
  private static final String JSON = "application/json";
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private final KeyProvider store;
  private final KeyProviderCryptoExtension crypto;
  private final byte[] cookieSecret = new byte[32];

  private HadoopKmsServer(KeyProvider store) {
    this.store = store;
    this.crypto = KeyProviderCryptoExtension.createKeyProviderCryptoExtension(store);
    new SecureRandom().nextBytes(cookieSecret);
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 3 && args.length != 5) {
      System.err.println(
          "usage: HadoopKmsServer <host> <port> <keystore.jceks> [<tls-port> <tls-dir>]");
      System.exit(2);
    }
    URI uri = new URI("jceks://file" + new java.io.File(args[2]).getAbsolutePath());
    KeyProvider store = new JavaKeyStoreProvider.Factory().createProvider(uri, new Configuration());
    HadoopKmsServer kms = new HadoopKmsServer(store);
    ExecutorService workers = Executors.newFixedThreadPool(8);
    InetAddress host = InetAddress.getByName(args[0]);
    if (args.length == 5) {
      ServerSocket tls = tlsListener(host, Integer.parseInt(args[3]), args[4]);
      System.out.println("HadoopKmsServer listening on https://" + args[0] + ":" + args[3] + "/kms (client certificates required)");
      Thread acceptor = new Thread(() -> acceptForever(tls, kms, workers), "tls-acceptor");
      acceptor.setDaemon(true);
      acceptor.start();
    }
    try (ServerSocket listener = new ServerSocket(Integer.parseInt(args[1]), 64, host)) {
      System.out.println("HadoopKmsServer listening on http://" + args[0] + ":" + args[1] + "/kms");
      acceptForever(listener, kms, workers);
    }
  }

  private static void acceptForever(ServerSocket listener, HadoopKmsServer kms, ExecutorService workers) {
    while (true) {
      try {
        Socket socket = listener.accept();
        workers.execute(() -> kms.serve(socket));
      } catch (java.io.IOException e) {
        System.out.println("accept failed: " + e);
      }
    }
  }

  /**
   * HTTPS with mutual TLS, as a KMS behind client-certificate authentication runs: the server
   * identity from {@code server.p12}, trusted client CAs from {@code truststore.p12}, both
   * protected by the password in {@code HADOOP_TLS_PASSWORD}.
   */
  private static ServerSocket tlsListener(InetAddress host, int port, String dir) throws Exception {
    char[] password = System.getenv("HADOOP_TLS_PASSWORD").toCharArray();
    java.security.KeyStore identity = java.security.KeyStore.getInstance("PKCS12");
    try (java.io.InputStream in = new java.io.FileInputStream(dir + "/server.p12")) {
      identity.load(in, password);
    }
    java.security.KeyStore trust = java.security.KeyStore.getInstance("PKCS12");
    try (java.io.InputStream in = new java.io.FileInputStream(dir + "/truststore.p12")) {
      trust.load(in, password);
    }
    javax.net.ssl.KeyManagerFactory kmf =
        javax.net.ssl.KeyManagerFactory.getInstance(javax.net.ssl.KeyManagerFactory.getDefaultAlgorithm());
    kmf.init(identity, password);
    javax.net.ssl.TrustManagerFactory tmf =
        javax.net.ssl.TrustManagerFactory.getInstance(javax.net.ssl.TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(trust);
    javax.net.ssl.SSLContext context = javax.net.ssl.SSLContext.getInstance("TLSv1.3");
    context.init(kmf.getKeyManagers(), tmf.getTrustManagers(), new SecureRandom());
    javax.net.ssl.SSLServerSocket listener =
        (javax.net.ssl.SSLServerSocket) context.getServerSocketFactory().createServerSocket(port, 64, host);
    listener.setNeedClientAuth(true);
    return listener;
  }

  /** An error answered as the real KMS does: a status and a RemoteException body. */
  private static final class HttpError extends Exception {
    private static final long serialVersionUID = 1L;
    final int status;

    HttpError(int status, Exception cause) {
      super(cause);
      this.status = status;
    }
  }

  /**
   * One HTTP/1.1 request per connection (Connection: close). Hand-rolled rather than the JDK's
   * HttpServer because that one rewrites header names ("Set-cookie"), and Hadoop's client looks
   * the auth cookie up by the exact name "Set-Cookie", as Jetty (the real KMS) sends it.
   */
  private void serve(Socket socket) {
    try (socket) {
      socket.setSoTimeout(30_000);
      Exchange ex = Exchange.read(new BufferedInputStream(socket.getInputStream()));
      if (ex != null) {
        handle(ex);
        ex.writeTo(socket.getOutputStream());
      }
    } catch (IOException e) {
      System.out.println("connection error: " + e);
    }
  }

  private void handle(Exchange ex) {
    try {
      if (ex.method.equals("OPTIONS")) {
        // Hadoop's client probes with OPTIONS, first without credentials (the SPNEGO probe):
        // a 200 without a cookie sends it to its pseudo (user.name) fallback, whose OPTIONS
        // earns the signed cookie that every later request presents.
        authenticateIfPresent(ex);
        send(ex, 200, null);
        return;
      }
      String user = authenticate(ex);
      if (!ex.path.startsWith(PREFIX)) {
        throw new HttpError(404, new FileNotFoundException(ex.path));
      }
      String[] parts = ex.path.substring(PREFIX.length()).split("/");
      for (int i = 0; i < parts.length; i++) {
        parts[i] = URLDecoder.decode(parts[i], StandardCharsets.UTF_8);
      }
      Response r = route(ex.method, parts, query(ex.rawQuery), new ByteArrayInputStream(ex.body));
      System.out.println(user + " " + ex.method + " " + ex.path + " -> " + r.status);
      send(ex, r.status, r.body);
    } catch (HttpError e) {
      sendError(ex, e.status, (Exception) e.getCause());
    } catch (Exception e) {
      sendError(ex, statusOf(e), e);
    }
  }

  /** A parsed request and the response being built for it. */
  private static final class Exchange {
    final String method;
    final String path;
    final String rawQuery;
    final Map<String, String> requestHeaders; // lower-case names
    final byte[] body;
    final Map<String, String> responseHeaders = new LinkedHashMap<>();
    int status = 500;
    byte[] responseBody = new byte[0];

    private Exchange(String method, String target, Map<String, String> headers, byte[] body) {
      this.method = method;
      int q = target.indexOf('?');
      this.path = q < 0 ? target : target.substring(0, q);
      this.rawQuery = q < 0 ? null : target.substring(q + 1);
      this.requestHeaders = headers;
      this.body = body;
    }

    static Exchange read(InputStream in) throws IOException {
      String requestLine = line(in);
      if (requestLine == null || requestLine.isEmpty()) {
        return null;
      }
      String[] rl = requestLine.split(" ");
      if (rl.length != 3) {
        throw new IOException("malformed request line: " + requestLine);
      }
      Map<String, String> headers = new HashMap<>();
      for (String h = line(in); h != null && !h.isEmpty(); h = line(in)) {
        int colon = h.indexOf(':');
        if (colon > 0) {
          headers.put(h.substring(0, colon).trim().toLowerCase(), h.substring(colon + 1).trim());
        }
      }
      byte[] body;
      if ("chunked".equalsIgnoreCase(headers.get("transfer-encoding"))) {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        for (int n = Integer.parseInt(line(in).split(";")[0].trim(), 16); n > 0;
            n = Integer.parseInt(line(in).split(";")[0].trim(), 16)) {
          out.write(in.readNBytes(n));
          line(in);
        }
        line(in);
        body = out.toByteArray();
      } else {
        int length = Integer.parseInt(headers.getOrDefault("content-length", "0"));
        if (length < 0 || length > 16 << 20) {
          throw new IOException("unacceptable content-length " + length);
        }
        body = in.readNBytes(length);
      }
      return new Exchange(rl[0], rl[1], headers, body);
    }

    private static String line(InputStream in) throws IOException {
      ByteArrayOutputStream buf = new ByteArrayOutputStream();
      for (int c = in.read(); c != -1; c = in.read()) {
        if (c == '\n') {
          String s = buf.toString(StandardCharsets.ISO_8859_1);
          return s.endsWith("\r") ? s.substring(0, s.length() - 1) : s;
        }
        buf.write(c);
      }
      return buf.size() == 0 ? null : buf.toString(StandardCharsets.ISO_8859_1);
    }

    void writeTo(OutputStream out) throws IOException {
      StringBuilder head = new StringBuilder("HTTP/1.1 ").append(status).append(' ')
          .append(reason(status)).append("\r\n");
      responseHeaders.put("Content-Length", Integer.toString(responseBody.length));
      responseHeaders.put("Connection", "close");
      responseHeaders.forEach((k, v) -> head.append(k).append(": ").append(v).append("\r\n"));
      head.append("\r\n");
      out.write(head.toString().getBytes(StandardCharsets.ISO_8859_1));
      out.write(responseBody);
      out.flush();
    }

    private static String reason(int status) {
      switch (status) {
        case 200: return "OK";
        case 201: return "Created";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        default: return "Internal Server Error";
      }
    }
  }

  private record Response(int status, Object body) {}

  private Response route(String method, String[] p, Map<String, List<String>> q, InputStream in)
      throws Exception {
    String op = p[0];
    // POST /keys
    if (op.equals("keys") && p.length == 1 && method.equals("POST")) {
      return createKey(readMap(in));
    }
    // GET /keys/names, GET /keys/metadata?key=a&key=b
    if (op.equals("keys") && p.length == 2 && method.equals("GET")) {
      if (p[1].equals("names")) {
        return new Response(200, store.getKeys());
      }
      if (p[1].equals("metadata")) {
        List<Object> out = new ArrayList<>();
        for (String name : q.getOrDefault("key", List.of())) {
          out.add(metadataJson(name, store.getMetadata(name)));
        }
        return new Response(200, out);
      }
    }
    if (op.equals("key") && p.length >= 2) {
      String name = p[1];
      if (p.length == 2) {
        switch (method) {
          case "POST": // roll over to a new version
            return rollKey(name, readMap(in));
          case "DELETE":
            store.deleteKey(name);
            store.flush();
            return new Response(200, null);
          case "GET":
            return new Response(200, metadataJson(name, store.getMetadata(name)));
          default:
            break;
        }
      } else if (p.length == 3) {
        switch (p[2]) {
          case "_metadata":
            return new Response(200, metadataJson(name, store.getMetadata(name)));
          case "_currentversion":
            return new Response(200, KMSUtil.toJSON(store.getCurrentKey(name)));
          case "_versions": {
            List<Object> out = new ArrayList<>();
            List<KeyProvider.KeyVersion> versions = store.getKeyVersions(name);
            if (versions != null) {
              for (KeyProvider.KeyVersion kv : versions) {
                out.add(withoutMaterial(KMSUtil.toJSON(kv)));
              }
            }
            return new Response(200, out);
          }
          case "_eek":
            return generateEeks(name, q);
          case "_reencryptbatch":
            return reencryptBatch(name, readList(in));
          case "_invalidatecache":
            crypto.drain(name);
            return new Response(200, null);
          default:
            break;
        }
      }
    }
    // GET /keyversion/<vn>, POST /keyversion/<vn>/_eek?eek_op=decrypt|reencrypt
    if (op.equals("keyversion") && p.length >= 2) {
      String versionName = p[1];
      if (p.length == 2 && method.equals("GET")) {
        return new Response(200, withoutMaterial(KMSUtil.toJSON(store.getKeyVersion(versionName))));
      }
      if (p.length == 3 && p[2].equals("_eek") && method.equals("POST")) {
        return eekOp(versionName, first(q, "eek_op"), readMap(in));
      }
    }
    throw new HttpError(404, new FileNotFoundException("no KMS resource " + String.join("/", p)));
  }

  private Response createKey(Map<String, Object> body) throws Exception {
    String name = KMSUtil.checkNotEmpty((String) body.get("name"), "name");
    KeyProvider.Options opts = KeyProvider.options(new Configuration());
    if (body.get("cipher") != null) {
      opts.setCipher((String) body.get("cipher"));
    }
    if (body.get("length") != null) {
      opts.setBitLength(((Number) body.get("length")).intValue());
    }
    opts.setDescription((String) body.get("description"));
    @SuppressWarnings("unchecked")
    Map<String, String> attributes = (Map<String, String>) body.get("attributes");
    opts.setAttributes(attributes);
    String material = (String) body.get("material");
    KeyProvider.KeyVersion kv = material == null
        ? store.createKey(name, opts)
        : store.createKey(name, decode(material), opts);
    store.flush();
    return new Response(201, withoutMaterial(KMSUtil.toJSON(kv)));
  }

  private Response rollKey(String name, Map<String, Object> body) throws Exception {
    String material = body == null ? null : (String) body.get("material");
    KeyProvider.KeyVersion kv = material == null
        ? store.rollNewVersion(name)
        : store.rollNewVersion(name, decode(material));
    store.flush();
    crypto.drain(name);
    return new Response(200, withoutMaterial(KMSUtil.toJSON(kv)));
  }

  private Response generateEeks(String name, Map<String, List<String>> q) throws Exception {
    String op = first(q, "eek_op");
    if (!"generate".equals(op)) {
      throw new IllegalArgumentException("unsupported eek_op '" + op + "' for GET _eek");
    }
    int n = Integer.parseInt(q.getOrDefault("num_keys", List.of("1")).get(0));
    if (n < 1 || n > 10000) {
      throw new IllegalArgumentException("num_keys must be between 1 and 10000");
    }
    List<Object> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(KMSUtil.toJSON(crypto.generateEncryptedKey(name)));
    }
    return new Response(200, out);
  }

  private Response eekOp(String versionName, String op, Map<String, Object> body) throws Exception {
    String keyName = KMSUtil.checkNotEmpty((String) body.get("name"), "name");
    byte[] iv = decode(KMSUtil.checkNotNull((String) body.get("iv"), "iv"));
    byte[] material = decode(KMSUtil.checkNotNull((String) body.get("material"), "material"));
    EncryptedKeyVersion eek = EncryptedKeyVersion.createForDecryption(keyName, versionName, iv, material);
    if ("decrypt".equals(op)) {
      return new Response(200, KMSUtil.toJSON(crypto.decryptEncryptedKey(eek)));
    }
    if ("reencrypt".equals(op)) {
      return new Response(200, KMSUtil.toJSON(crypto.reencryptEncryptedKey(eek)));
    }
    throw new IllegalArgumentException("unsupported eek_op '" + op + "' for POST _eek");
  }

  private Response reencryptBatch(String name, List<Object> body) throws Exception {
    List<EncryptedKeyVersion> eeks = KMSUtil.parseJSONEncKeyVersions(name, body);
    crypto.reencryptEncryptedKeys(eeks);
    List<Object> out = new ArrayList<>();
    for (EncryptedKeyVersion eek : eeks) {
      out.add(KMSUtil.toJSON(eek));
    }
    return new Response(200, out);
  }

  /** The real KMS's metadata JSON (KMSServerJSONUtils): an unknown key is {}. */
  private static Map<String, Object> metadataJson(String name, KeyProvider.Metadata md) {
    Map<String, Object> json = new LinkedHashMap<>();
    if (md != null) {
      json.put("name", name);
      json.put("cipher", md.getCipher());
      json.put("length", md.getBitLength());
      json.put("description", md.getDescription());
      json.put("attributes", md.getAttributes());
      json.put("created", md.getCreated() == null ? null : md.getCreated().getTime());
      json.put("versions", md.getVersions());
    }
    return json;
  }

  /** Key material (the TEK) never leaves this server, as with a KMS without GET ACLs. */
  @SuppressWarnings({"rawtypes", "unchecked"})
  private static Map withoutMaterial(Map json) {
    json.remove("material");
    return json;
  }

  // ---- simple authentication, as Hadoop's PseudoAuthenticationHandler + AuthenticationFilter

  private String authenticate(Exchange ex) throws Exception {
    String user = authenticateIfPresent(ex);
    if (user == null) {
      ex.responseHeaders.put("WWW-Authenticate", "PseudoAuth");
      throw new HttpError(401, new SecurityException(
          "Anonymous requests are disallowed: pass user.name (simple authentication)"));
    }
    return user;
  }

  /** The user named by user.name or a valid cookie (and a fresh cookie for it), else null. */
  private String authenticateIfPresent(Exchange ex) throws Exception {
    String user = first(query(ex.rawQuery), "user.name");
    if (user == null) {
      user = userFromCookie(ex.requestHeaders.get("cookie"));
    }
    if (user == null || user.isEmpty()) {
      return null;
    }
    String token = "u=" + user + "&p=" + user + "&t=simple&e=" + (System.currentTimeMillis() + 3_600_000L);
    ex.responseHeaders.put("Set-Cookie",
        "hadoop.auth=\"" + token + "&s=" + sign(token) + "\"; Path=/; HttpOnly");
    return user;
  }

  private String userFromCookie(String header) throws Exception {
    if (header == null) {
      return null;
    }
    for (String c : header.split(";")) {
      String kv = c.trim();
      if (!kv.startsWith("hadoop.auth=")) {
        continue;
      }
      String value = kv.substring("hadoop.auth=".length()).replace("\"", "");
      int sig = value.lastIndexOf("&s=");
      if (sig < 0 || !sign(value.substring(0, sig)).equals(value.substring(sig + 3))) {
        return null;
      }
      Map<String, String> fields = new HashMap<>();
      for (String f : value.substring(0, sig).split("&")) {
        int eq = f.indexOf('=');
        if (eq > 0) {
          fields.put(f.substring(0, eq), f.substring(eq + 1));
        }
      }
      long expires = Long.parseLong(fields.getOrDefault("e", "0"));
      return expires > System.currentTimeMillis() ? fields.get("u") : null;
    }
    return null;
  }

  private String sign(String token) throws Exception {
    Mac mac = Mac.getInstance("HmacSHA256");
    mac.init(new SecretKeySpec(cookieSecret, "HmacSHA256"));
    return Base64.getUrlEncoder().withoutPadding().encodeToString(
        mac.doFinal(token.getBytes(StandardCharsets.UTF_8)));
  }

  // ---- plumbing

  /** Status codes of the real KMS's KMSExceptionsProvider. */
  private static int statusOf(Exception e) {
    if (e instanceof SecurityException) {
      return 403;
    }
    if (e instanceof UnsupportedOperationException || e instanceof IllegalArgumentException) {
      return 400;
    }
    return 500;
  }

  private static void sendError(Exchange ex, int status, Exception e) {
    Map<String, Object> inner = new LinkedHashMap<>();
    inner.put("message", e.getMessage() == null ? e.toString() : e.getMessage());
    inner.put("exception", e.getClass().getSimpleName());
    inner.put("javaClassName", e.getClass().getName());
    System.out.println("error " + status + " " + ex.method + " " + ex.path + ": " + e);
    send(ex, status, Map.of("RemoteException", inner));
  }

  private static void send(Exchange ex, int status, Object body) {
    ex.status = status;
    if (body != null) {
      try {
        ex.responseBody = MAPPER.writeValueAsBytes(body);
        ex.responseHeaders.put("Content-Type", JSON);
      } catch (IOException e) {
        ex.status = 500;
      }
    }
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> readMap(InputStream in) throws IOException {
    byte[] bytes = in.readAllBytes();
    return bytes.length == 0 ? new HashMap<>() : MAPPER.readValue(bytes, Map.class);
  }

  @SuppressWarnings("unchecked")
  private static List<Object> readList(InputStream in) throws IOException {
    byte[] bytes = in.readAllBytes();
    if (bytes.length == 0) {
      throw new IllegalArgumentException("request body must be a JSON list");
    }
    return MAPPER.readValue(bytes, List.class);
  }

  private static Map<String, List<String>> query(String raw) {
    Map<String, List<String>> out = new HashMap<>();
    if (raw == null) {
      return out;
    }
    for (String pair : raw.split("&")) {
      int eq = pair.indexOf('=');
      String k = URLDecoder.decode(eq < 0 ? pair : pair.substring(0, eq), StandardCharsets.UTF_8);
      String v = eq < 0 ? "" : URLDecoder.decode(pair.substring(eq + 1), StandardCharsets.UTF_8);
      out.computeIfAbsent(k, x -> new ArrayList<>()).add(v);
    }
    return out;
  }

  private static String first(Map<String, List<String>> q, String key) {
    List<String> v = q.get(key);
    return v == null || v.isEmpty() ? null : v.get(0);
  }

  /** Hadoop clients send URL-safe unpadded base64; accept the standard alphabet too. */
  private static byte[] decode(String b64) {
    String s = b64.replace('+', '-').replace('/', '_').replace("=", "");
    return Base64.getUrlDecoder().decode(s);
  }
}
