// usnap probe: what this kernel and this process allow.
import type { Command } from 'commander';
import { probe } from '../../probe';
import { act, examples, EXIT_FAIL, EXIT_OK, keyValues, print, printJson, table } from '../util';

export function registerProbe(program: Command): void {
  program
    .command('probe')
    .description('check whether this machine and process can take snapshots (userfaultfd features, privileges)')
    .addHelpText(
      'after',
      examples([
        ['usnap probe', 'human summary'],
        ['usnap probe --json', '{ supported, kernel, privileged, route, features, reason? }'],
      ]) + '\nExits 0 when snapshots are supported here, 1 otherwise.\n',
    )
    .action(
      act((ctx) => {
        const p = probe();
        if (ctx.json) {
          printJson(p);
        } else {
          const { c } = ctx;
          print(
            keyValues(ctx, [
              ['supported', p.supported ? c.green('yes') : c.red('no')],
              ['kernel', p.kernel],
              ['privileged', p.privileged ? 'yes' : 'no (kernel-mode writes into a region fail with EFAULT)'],
              ['route', p.route ?? '-'],
              ...(p.reason ? ([['reason', c.yellow(p.reason)]] as [string, string][]) : []),
            ]),
          );
          print();
          const names: [keyof typeof p.features, string][] = [
            ['writeProtect', 'UFFD_FEATURE_PAGEFAULT_FLAG_WP'],
            ['wpUnpopulated', 'UFFD_FEATURE_WP_UNPOPULATED'],
            ['wpAsync', 'UFFD_FEATURE_WP_ASYNC'],
            ['eventFork', 'UFFD_FEATURE_EVENT_FORK'],
            ['eventRemove', 'UFFD_FEATURE_EVENT_REMOVE'],
            ['sigbus', 'UFFD_FEATURE_SIGBUS'],
            ['poison', 'UFFD_FEATURE_POISON'],
            ['move', 'UFFD_FEATURE_MOVE'],
          ];
          print(
            table(
              ctx,
              ['FEATURE', 'KERNEL FLAG', 'PRESENT'],
              names.map(([k, flag]) => [k, flag, p.features[k] ? c.green('yes') : c.red('no')]),
            ),
          );
          print(c.dim(`raw features: 0x${p.features.raw.toString(16)}`));
        }
        return p.supported ? EXIT_OK : EXIT_FAIL;
      }),
    );
}
