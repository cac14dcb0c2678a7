# Reads an archive the way vpsAdminOS's osctld imports one
# (osctld/lib/osctld/container/importer.rb and dataset_builder.rb at
# 7d64ad8c), written anew for the tests: entries looked up by name from the
# start of the file with Ruby's TarReader, streams piped through a shell
# (`tar -xOf ARCHIVE MEMBER [| gunzip] | zfs recv -F DS`) into datasets made
# with canmount=noauto, `format: tar` archives' rootfs/base.tar.gz unpacked
# with GNU tar, hooks written with the mode of their entries.
#
# Usage: ruby -e SCRIPT ARCHIVE ROOT_DATASET ROOTFS_DIR HOOKS_DIR
# ROOT_DATASET is where a zfs archive's root dataset goes (its subdatasets
# below it); ROOTFS_DIR where a tar archive's rootfs is unpacked. Prints a
# JSON summary: format, datasets, the container's mounts, the hooks written.
require 'rubygems/package'
require 'yaml'
require 'json'
require 'fileutils'
require 'shellwords'

archive, root_ds, rootfs, hooks_dir = ARGV

def run!(cmd)
  pid = Process.spawn(cmd)
  Process.wait(pid)
  raise "command '#{cmd}' exited with #{$?.exitstatus}" unless $?.exitstatus.zero?
end

def find(tar, name)
  found = tar.find { |entry| entry.full_name == name }
  tar.rewind
  found
end

File.open(archive, 'rb') do |io|
  tar = Gem::Package::TarReader.new(io)
  meta = tar.seek('metadata.yml') { |e| YAML.safe_load(e.read) }
  raise 'metadata.yml not found' unless meta

  ct = YAML.safe_load(tar.seek('config/container.yml', &:read))
  datasets = meta['datasets'] || []

  case meta['format']
  when 'zfs'
    ([nil] + datasets).each do |rel|
      ds = rel ? "#{root_ds}/#{rel}" : root_ds
      # The original mounts the new dataset before receiving into it; on
      # zfs-fuse a full stream received over a mounted dataset fails now and
      # then ("I/O error"), so it stays unmounted here: `recv -F` replaces
      # it either way.
      run!("zfs create -o canmount=noauto #{rel ? '' : '-p'} #{ds}")
      { 'base' => true, 'incremental' => false }.each do |kind, required|
        stem = File.join('rootfs', rel || '', "#{kind}.dat")
        hit = [[stem, nil], ["#{stem}.gz", 'gunzip']].find { |n, _| find(tar, n) }
        raise "unable to import: #{kind} of #{rel || '/'} not found" if hit.nil? && required
        next if hit.nil?

        filter = hit[1] ? " | #{hit[1]}" : ''
        run!("tar -xOf #{archive.shellescape} #{hit[0]}#{filter} | zfs recv -F #{ds}")
      end
    end
    tar.seek('snapshots.yml') do |entry|
      snaps = YAML.safe_load(entry.read)
      ([nil] + datasets).each do |rel|
        ds = rel ? "#{root_ds}/#{rel}" : root_ds
        snaps.each { |snap| run!("zfs destroy #{ds}@#{snap}") }
      end
    end
  when 'tar'
    FileUtils.mkdir_p(rootfs)
    raise 'rootfs archive not found' unless find(tar, 'rootfs/base.tar.gz')

    run!("tar -xOf #{archive.shellescape} rootfs/base.tar.gz | " \
         "tar --xattrs-include=security.capability --xattrs -xz -C #{rootfs.shellescape}")
  else
    raise "unsupported archive format '#{meta['format']}'"
  end

  written = []
  tar.each do |entry|
    next unless entry.full_name.start_with?('hooks/')

    path = File.join(hooks_dir, entry.full_name.delete_prefix('hooks/'))
    mode = entry.header.mode & 0o7777
    if entry.directory?
      FileUtils.mkdir_p(path, mode: mode)
    elsif entry.file?
      File.open(path, 'w', mode) { |f| f.write(entry.read) }
      written << [entry.full_name.delete_prefix('hooks/'), mode]
    end
  end

  puts JSON.generate(
    'format' => meta['format'],
    'datasets' => datasets,
    'mounts' => ct['mounts'] || [],
    'hooks' => written
  )
end
