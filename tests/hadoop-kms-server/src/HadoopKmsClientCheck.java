import java.net.URI;
import java.util.Arrays;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.crypto.key.KeyProvider;
import org.apache.hadoop.crypto.key.KeyProviderCryptoExtension;
import org.apache.hadoop.crypto.key.KeyProviderCryptoExtension.EncryptedKeyVersion;
import org.apache.hadoop.crypto.key.KeyProviderFactory;

/**
 * TEST INFRASTRUCTURE: drives a KMS through Hadoop's own client (KMSClientProvider, reached via
 * KeyProviderFactory and a kms:// URI), to prove HadoopKmsServer speaks the protocol Hadoop
 * speaks. Prints one "ok ..." line per checked step; exits 1 on the first mismatch.
 *
 * <p>Usage: {@code java -cp ... HadoopKmsClientCheck kms://http@127.0.0.1:PORT/kms KEYNAME}
 */
public final class HadoopKmsClientCheck {
  public static void main(String[] args) throws Exception {
    Configuration conf = new Configuration();
    // The client prefetches EEKs (500 by default) on background threads; keep that small.
    conf.setInt("hadoop.security.kms.client.encrypted.key.cache.size", 4);
    KeyProvider kms = KeyProviderFactory.get(new URI(args[0]), conf);
    if (kms == null || !kms.getClass().getSimpleName().endsWith("KMSClientProvider")) {
      fail("expected Hadoop's (LoadBalancing)KMSClientProvider for " + args[0] + ", got " + kms);
    }
    KeyProviderCryptoExtension crypto = KeyProviderCryptoExtension.createKeyProviderCryptoExtension(kms);
    String key = args[1];

    KeyProvider.KeyVersion created = kms.createKey(key, KeyProvider.options(conf));
    check(created.getName().equals(key), "createKey returned key " + created.getName());
    System.out.println("ok createKey " + created.getVersionName());

    EncryptedKeyVersion eek = crypto.generateEncryptedKey(key);
    KeyProvider.KeyVersion dek = crypto.decryptEncryptedKey(eek);
    check(dek.getMaterial().length == 16, "DEK length " + dek.getMaterial().length);
    System.out.println("ok generateEncryptedKey+decrypt on " + eek.getEncryptionKeyVersionName());

    KeyProvider.KeyVersion rolled = kms.rollNewVersion(key);
    check(!rolled.getVersionName().equals(created.getVersionName()), "roll kept the version name");
    System.out.println("ok rollNewVersion " + rolled.getVersionName());

    EncryptedKeyVersion rewrapped = crypto.reencryptEncryptedKey(eek);
    check(rewrapped.getEncryptionKeyVersionName().equals(rolled.getVersionName()),
        "reencrypt produced " + rewrapped.getEncryptionKeyVersionName());
    check(Arrays.equals(crypto.decryptEncryptedKey(rewrapped).getMaterial(), dek.getMaterial()),
        "re-encrypted EEK decrypts to a different DEK");
    System.out.println("ok reencryptEncryptedKey to " + rewrapped.getEncryptionKeyVersionName());

    KeyProvider.Metadata md = kms.getMetadata(key);
    check(md != null && md.getVersions() == 2, "metadata versions " + (md == null ? null : md.getVersions()));
    check(kms.getMetadata(key + "-missing") == null, "metadata of a missing key is not null");
    System.out.println("ok getMetadata versions=" + md.getVersions());

    kms.deleteKey(key);
    check(kms.getMetadata(key) == null, "key still present after delete");
    System.out.println("ok deleteKey");
    System.exit(0); // the client's cache refill threads are not daemons
  }

  private static void check(boolean ok, String what) {
    if (!ok) {
      fail(what);
    }
  }

  private static void fail(String what) {
    System.out.println("FAIL " + what);
    System.exit(1);
  }
}
