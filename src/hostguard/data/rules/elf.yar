// Linux executables: coin miners, preload rootkits and bots. Every rule: meta severity, family, description; a
// hit and a near miss in tests/scanner/test_rules.py. Written here for hostguard; see docs/malware.md for how to
// add one.
//
// Precision: the dynamic loader itself names /etc/ld.so.preload and IRC clients speak PRIVMSG; each rule asks for
// a combination that no packaged program carries (checked against /usr/bin, /usr/sbin and the shared libraries
// of a Debian system in tests/scanner/test_rules_precision.py).

rule elf_miner_stratum
{
    meta:
        severity = "high"
        family = "miner"
        description = "A Linux program that carries a mining-pool address (stratum+tcp:// or stratum+ssl://): a coin miner"
    strings:
        $stratum = /stratum\+(tcp|ssl|tls):\/\// nocase
    condition:
        uint32(0) == 0x464c457f and $stratum
}

rule elf_miner_xmrig
{
    meta:
        severity = "high"
        family = "miner"
        description = "A Linux program with the configuration keys and algorithm names of the XMRig/CryptoNight family of coin miners"
    strings:
        $donate = "donate-level" ascii nocase
        $cn = "cryptonight" ascii nocase
        $rx = "randomx" ascii nocase
        $xmrig = "xmrig" ascii nocase
        $nicehash = "\"nicehash\"" ascii
        $rigid = "rig-id" ascii
        $pools = "\"pools\"" ascii
        $cpu = "max-threads-hint" ascii
    condition:
        uint32(0) == 0x464c457f and 4 of them
}

rule miner_pool_config
{
    meta:
        severity = "medium"
        family = "miner"
        description = "A coin miner's configuration file: a list of mining pools with a wallet as the user"
    strings:
        $pools = /"pools"\s*:\s*\[/
        $url = /"url"\s*:\s*"(stratum\+(tcp|ssl|tls):\/\/)?[a-z0-9.\-]{1,80}:[0-9]{2,5}"/ nocase
        $user = /"user"\s*:\s*"[0-9a-z]{40,110}/ nocase
        $algo = /"(algo|coin)"\s*:\s*"(rx\/|cn\/|cryptonight|randomx|monero|xmr|argon2|kawpow|ethash)/ nocase
    condition:
        filesize < 1MB and $pools and $url and ($user or $algo)
}

rule elf_preload_writer
{
    meta:
        severity = "high"
        family = "rootkit"
        description = "A Linux program that names /etc/ld.so.preload together with tools of persistence or hiding (a trojan that plants a preload rootkit)"
    strings:
        $preload = "/etc/ld.so.preload" ascii
        $chattr = /chattr\s{1,4}[+-]i/
        $echo = /echo\s[^\n\x00]{0,80}>>?\s{0,2}\/etc\/ld\.so\.preload/
        $nettcp = "/proc/net/tcp" ascii
        $shm = /\/dev\/shm\/\.?[a-z0-9]{0,16}\.so/ nocase
        $cron = /\/var\/spool\/cron|\/etc\/cron\.d\// ascii
        $stratum = "stratum+" ascii nocase
    condition:
        uint32(0) == 0x464c457f and $preload and 2 of ($chattr, $echo, $nettcp, $shm, $cron, $stratum)
}

rule elf_process_hiding
{
    meta:
        severity = "critical"
        family = "rootkit"
        description = "A shared library that hooks directory reading and names the preload file or /proc: a user-mode rootkit hiding processes or files"
    strings:
        $readdir = "readdir" ascii fullword
        $readdir64 = "readdir64" ascii fullword
        $dlsym = "dlsym" ascii fullword
        $proc = /\/proc\/(%d|%s|self)\// ascii
        $preload = "/etc/ld.so.preload" ascii
        $hide = /(hide|hidden)_?(proc|pid|file|port|prefix|me)/ nocase
    condition:
        uint32(0) == 0x464c457f and $readdir and $readdir64 and $dlsym and $proc and ($preload or $hide)
}

rule elf_irc_bot
{
    meta:
        severity = "high"
        family = "bot"
        description = "A Linux program that speaks IRC and carries flooding commands: a remote-controlled DDoS bot"
    strings:
        $privmsg = "PRIVMSG " ascii
        $nick = "NICK " ascii
        $join = "JOIN " ascii
        $flood = /\b(udp|syn|ack|tcp|http|std|junk|rst|xmas)[\-_ ]?flood/ nocase
        $kill = /killattk|killall\s?flood|stopattack/ nocase
    condition:
        uint32(0) == 0x464c457f and $privmsg and $nick and $join and ($flood or $kill)
}

rule elf_ddos_bot
{
    meta:
        severity = "high"
        family = "bot"
        description = "A Linux program with a table of denial-of-service attack commands (UDP/SYN/ACK/HTTP floods): a DDoS bot"
    strings:
        $udp = /\budp[\-_ ]?flood/ nocase
        $syn = /\bsyn[\-_ ]?flood/ nocase
        $ack = /\back[\-_ ]?flood/ nocase
        $http = /\bhttp[\-_ ]?flood/ nocase
        $tcp = /\btcp[\-_ ]?flood/ nocase
        $kill = "killattk" ascii nocase
        $spoof = "getspoofs" ascii nocase
        $busybox = /\/bin\/busybox\s{1,4}[A-Z]{4,8}/
    condition:
        // firewalls name SYN and UDP floods too; a bot also has the command that stops an attack or its busybox calls
        uint32(0) == 0x464c457f and 2 of ($udp, $syn, $ack, $http, $tcp) and 1 of ($kill, $spoof, $busybox)
}

rule elf_upx_packed
{
    meta:
        severity = "low"
        family = "packer"
        description = "A Linux program packed with UPX: packing hides a program's contents and is common in malware, rare in packaged software"
    strings:
        $magic = "UPX!" ascii
        $info = "This file is packed with the UPX executable packer" ascii
    condition:
        // the packer's header sits right after the program headers; a program that only mentions UPX (file(1)'s
        // magic database) has the word elsewhere
        uint32(0) == 0x464c457f and $magic in (0..1024) and ($info or #magic >= 2)
}
