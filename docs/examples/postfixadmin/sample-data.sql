-- Accounts as Postfix Admin stores them, all with the password "test123" (the
-- known-answer vectors of Postfix Admin's tests/PacryptTest.php), in each form
-- its "encrypt" settings produce. Runs on PostgreSQL and MariaDB alike.
INSERT INTO domain (domain, description, active) VALUES ('example.com', 'Example', '1');
INSERT INTO domain (domain, description, active) VALUES ('old.example', 'Retired', '0');

INSERT INTO mailbox (username, password, name, maildir, quota, local_part, domain, active) VALUES
 ('crypt6@example.com',
  '$6$IeqpXtDIXF09ADdc$IsE.SSK3zuwtS9fdWZ0oVxXQjPDj834xqxTiv3Qfidq3AbAjPb0DNyI28JyzmDVlbfC9uSfNxD9RUyeO1.7FV/',
  'php_crypt (the default): bare SHA-512 crypt', 'example.com/crypt6/', 1024000, 'crypt6', 'example.com', '1'),
 ('sha512@example.com',
  '{SHA512-CRYPT}$6$MViNQUSbWyXWL9wZ$63VsBU2a/ZFb9f/dK4EmaXABE9jAcNltR7y6a2tXLKoV5F5jMezno.2KpmtD3U0FDjfa7A.pkCluVMlZJ.F64.',
  'SHA512-CRYPT with its prefix', 'example.com/sha512/', 0, 'sha512', 'example.com', '1'),
 ('blf@example.com',
  '{BLF-CRYPT}$2y$05$cEEZv2h/NtLXII.emi2TP.rMZyB7VRSkyToXWBqqz6cXDoyay166q',
  'BLF-CRYPT with its prefix', 'example.com/blf/', 0, 'blf', 'example.com', '1'),
 ('md5crypt@example.com', '$1$c9809462$fC8eUPU2lq7arWRvxChMu1',
  'md5crypt (legacy): bare MD5 crypt', 'example.com/md5crypt/', 0, 'md5crypt', 'example.com', '1'),
 ('away@example.com', '$1$c9809462$fC8eUPU2lq7arWRvxChMu1',
  'an inactive mailbox', 'example.com/away/', 0, 'away', 'example.com', '0');
